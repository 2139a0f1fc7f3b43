"""Generator health once a second: CPU of this process and event-loop lag.

Lag is how late a short sleep wakes up: when the generator's own loop is saturated, every
latency it measures includes that much of its own queueing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent
import psutil
from locust.env import Environment
from locust.runners import WorkerRunner

from wsload.run.records import HealthTick

HEALTH_INTERVAL_S = 1.0


def sample_health(environment: Environment, observe: Callable[[HealthTick], None]) -> None:
    """Forever: one ``HealthTick`` a second to ``observe``; the users count only where the
    process knows the whole run's (a standalone process or the master)."""
    process = psutil.Process()
    process.cpu_percent()
    whole_run = not isinstance(environment.runner, WorkerRunner)
    while True:
        worst = 0.0
        deadline = time.monotonic() + HEALTH_INTERVAL_S
        while time.monotonic() < deadline:
            asked = time.monotonic()
            gevent.sleep(0.05)
            worst = max(worst, (time.monotonic() - asked - 0.05) * 1000.0)
        runner = environment.runner
        users = runner.user_count if runner is not None and whole_run else None
        observe(HealthTick(time.time(), process.cpu_percent(), worst, users))
