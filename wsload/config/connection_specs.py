"""The options of many concurrent sessions: where they connect from, the limits checked
before the ramp, and the connection-capacity run (``locustfiles/connections.py``).

Declarations only (``OptionSpec`` rows, group ``run``); ``wsload.config.options`` turns
their values into ``RunOptions`` fields.
"""

from __future__ import annotations

from wsload.config.spec import OptionSpec

CONNECTION_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "--source-ips",
        "WSLOAD_SOURCE_IPS",
        "local addresses to connect from, round robin: a list (127.0.0.2,127.0.0.3), a range "
        "(127.0.0.2-127.0.0.40) or a CIDR (127.0.0.0/28); each address and destination has "
        "its own ephemeral ports; with several processes each takes its share",
    ),
    OptionSpec(
        "--no-budget-check",
        "WSLOAD_NO_BUDGET_CHECK",
        "start even when the users exceed the local ports per source address and "
        "destination or a process's open-file limit (e.g. workers on other machines)",
        action="store_true",
    ),
    OptionSpec(
        "--sessions-per-user",
        "WSLOAD_SESSIONS_PER_USER",
        "connections.py: sessions each user holds, each with its own subject and token, "
        "served by one greenlet (sessions held = users x this)",
        1,
        int,
    ),
    OptionSpec(
        "--max-handshakes",
        "WSLOAD_MAX_HANDSHAKES",
        "connections.py: connection attempts in flight at once in each generator process; "
        "the others wait their turn, so a ramp faster than the server accepts queues in the "
        "generator (unmeasured) instead of in the server's accept queue, where handshakes "
        "time out (0: no bound)",
        100,
        int,
    ),
    OptionSpec(
        "--io-batch",
        "WSLOAD_IO_BATCH",
        "connections.py: milliseconds a busy generator process lets network events gather "
        "before it wakes to read them, so one wake serves many sessions (a third less CPU "
        "per session on a 100,000-session ramp); arrival and TCP connect times come from "
        "the kernel, so they stay exact; ws:// only (0: wake for every event)",
        10.0,
        float,
    ),
    OptionSpec(
        "--trickle-interval",
        "WSLOAD_TRICKLE_INTERVAL",
        "connections.py: each held session sends one chat message every this many seconds "
        "(0: none, heartbeats only)",
        0.0,
        float,
    ),
)
