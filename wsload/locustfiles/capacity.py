"""wsload's capacity run: chat users raised in steps, or a search for the largest load that
keeps the service levels; each step is marked in the run folder (``steps.csv``).

    locust -f locustfiles/capacity.py --headless --step-start 10 --step-size 10 \\
        --step-hold 60 --step-max 200                      # steps, embedded target
    locust -f locustfiles/capacity.py --headless --step-search --slo-e2e-p95 2000 ...
    wsload report results/<run-id> --target-users 5000      # capacity statement

Locust's --users, --spawn-rate and --run-time do not apply: the steps decide. The other
wsload options (``--host``, ``--think-time``, ``--target-args`` ...) work as in ws_auth.py.
"""

import wsload.locust.lifecycle  # noqa: F401 - registers options and listeners
from wsload.locust.chat import ChatUser  # noqa: F401
from wsload.locust.shapes import SteppedShape  # noqa: F401 - registers the --step-* options
