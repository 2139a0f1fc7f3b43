"""Connection storms: users that only connect, authenticate and close, with fresh tokens.

The locustfile itself ships inside the package (``wsload/locustfiles/handshakes.py``); this one
keeps the checkout's ``locust -f locustfiles/handshakes.py`` working.
"""

from wsload.locustfiles.handshakes import *  # noqa: F403 - its users, shape and listeners
