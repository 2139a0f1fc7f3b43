"""Connection capacity: ramp to N authenticated sessions at a rate, hold them with heartbeats.

    locust -f locustfiles/connections.py --headless -u 20000 -r 2000 -t 90s --processes 4 \\
        --source-ips 127.0.0.2-127.0.0.5 --target-args "--workers 2"

Each user opens one session and holds it (``--heartbeat-interval``; ``--trickle-interval S``
adds one chat turn per session every S seconds). Before the ramp wsload checks the users
against the local ports per source address and the open-file limit of each process. Every
second each process records its memory and open sessions (``health:memory_kb``,
``health:sessions``) and the master the reference target's (``health:target_memory_kb``,
``health:target_sessions``); ``wsload report`` draws latency and memory against open
sessions and states the largest count held cleanly. No security probes: every user is a
held session (``--probe-users`` is ignored here).
"""

import pyarrow.ipc  # noqa: F401 - see below

import wsload.locust.lifecycle  # registers options and listeners
import wsload.run.wire  # noqa: F401 - see below
from wsload.locust.connection_user import ConnectionUser, tolerate_busy_workers  # noqa: F401

tolerate_busy_workers()
# The results' Arrow encoding is loaded here, before `--processes` forks the workers, rather
# than by each worker once records flow: its pages are then shared, about 15 MB less per
# process (PSS), which is a KB per session at 100,000 sessions over six workers.
