"""When a held session pings next: on its own phase, each interval jittered a little.

Kept apart from the Locust user that uses it (importing Locust patches the whole process
with gevent), so that the schedule can be checked on its own.
"""

from __future__ import annotations

import random

PING_JITTER = 0.1  # each heartbeat interval is drawn within +-10% of the one asked for


def next_ping_at(scheduled: float, now: float, interval: float, rng: random.Random) -> float:
    """When to ping next after the ping due at ``scheduled`` went out at ``now``.

    One interval (within ``PING_JITTER`` of it) after the time it was due, not after it was
    sent, so a stall that delays many pings does not leave them due at one moment from then
    on; a ping late by a whole interval or more starts again at a random point of the next.
    """
    step = interval * (1.0 + PING_JITTER * (2.0 * rng.random() - 1.0))
    at = scheduled + step
    if at <= now:
        at = now + step * rng.random()
    return at
