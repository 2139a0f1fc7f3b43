"""Connection storms: users that only connect, authenticate and close, with fresh tokens.

    locust -f locustfiles/handshakes.py --headless -u 200 -r 200 -t 30s --storm 2

With ``--storm S`` all users connect at the same instant every S seconds; without it each
user loops back to back. Security probes run alongside unless ``--probe-users 0``.
"""

import wsload.locust.lifecycle  # noqa: F401 - registers options and listeners
from wsload.locust.handshake import HandshakeUser  # noqa: F401
from wsload.locust.probe import SecurityProbeUser  # noqa: F401
