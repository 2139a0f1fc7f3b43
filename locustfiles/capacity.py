"""wsload's capacity run: chat users raised in steps, or a search for the largest load.

The locustfile itself ships inside the package (``wsload/locustfiles/capacity.py``); this one
keeps the checkout's ``locust -f locustfiles/capacity.py`` working.
"""

from wsload.locustfiles.capacity import *  # noqa: F403 - its users, shape and listeners
