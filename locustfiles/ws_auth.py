"""wsload's main locustfile: browser-like chat users against a JWT WebSocket agent backend.

The locustfile itself ships inside the package (``wsload/locustfiles/ws_auth.py``); this one
keeps the checkout's ``locust -f locustfiles/ws_auth.py`` working.
"""

from wsload.locustfiles.ws_auth import *  # noqa: F403 - its users, shape and listeners
