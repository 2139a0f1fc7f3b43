"""wsload's main locustfile: browser-like chat users against a JWT WebSocket agent backend.

    locust -f locustfiles/ws_auth.py                      # web UI, embedded reference target
    locust -f locustfiles/ws_auth.py --host ws://127.0.0.1:8000 --jwt-secret ...

With no --host it starts the reference target on a free loopback port and stops it at the
end. wsload's options (``locust -f locustfiles/ws_auth.py --help``, section "Custom
arguments") are also read from WSLOAD_* environment variables and locust.conf.
"""

import wsload.locust.lifecycle  # noqa: F401 - registers options and listeners
from wsload.locust.chat import ChatUser  # noqa: F401
from wsload.locust.probe import SecurityProbeUser  # noqa: F401
