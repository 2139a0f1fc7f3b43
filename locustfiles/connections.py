"""Connection capacity: ramp to N authenticated sessions at a rate and hold them.

The locustfile itself ships inside the package (``wsload/locustfiles/connections.py``); this
one keeps the checkout's ``locust -f locustfiles/connections.py`` working.
"""

from wsload.locustfiles.connections import *  # noqa: F403 - its users, shape and listeners
