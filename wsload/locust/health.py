"""Generator health once a second: CPU of this process and event-loop lag; in a
connection-capacity run also its memory and open sessions, and the reference target's.

Lag is how late a short sleep wakes up: when the generator's own loop is saturated, every
latency it measures includes that much of its own queueing.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

import gevent
import psutil
from locust.env import Environment
from locust.runners import WorkerRunner

from wsload.locust.process import PROCESS
from wsload.run.memory import memory_kb
from wsload.run.records import HealthTick

HEALTH_INTERVAL_S = 1.0
TARGET_POLL_S = 2.0
# Reading PSS walks every page of the process (about 9 ms at 300 MB): read it again only
# after 200 times as long as the last read took, so it costs at most 0.5% of the process.
PSS_COST_SHARE = 200.0


def holds_sessions(environment: Environment) -> bool:
    """Whether the run's users hold sessions to be counted (``ConnectionUser``)."""
    return any(c.__name__ == "ConnectionUser" for c in environment.user_classes)


def sample_health(environment: Environment, observe: Callable[[HealthTick], None]) -> None:
    """Forever: one ``HealthTick`` a second to ``observe``; the users count only where the
    process knows the whole run's (a standalone process or the master)."""
    process = psutil.Process()
    process.cpu_percent()
    whole_run = not isinstance(environment.runner, WorkerRunner)
    gauges = holds_sessions(environment)
    target: list[tuple[float, int]] = []
    poller = gevent.spawn(_poll_target, environment, target) if gauges and whole_run else None
    pss_due = 0.0
    try:
        while True:
            worst = 0.0
            deadline = time.monotonic() + HEALTH_INTERVAL_S
            while time.monotonic() < deadline:
                asked = time.monotonic()
                gevent.sleep(0.05)
                worst = max(worst, (time.monotonic() - asked - 0.05) * 1000.0)
            runner = environment.runner
            users = runner.user_count if runner is not None and whole_run else None
            tick = HealthTick(time.time(), process.cpu_percent(), worst, users)
            if gauges:
                runtime = PROCESS.runtime
                if time.monotonic() >= pss_due:  # between reads the report carries it
                    began = time.monotonic()
                    tick.memory_kb = memory_kb()
                    pss_due = began + (time.monotonic() - began) * PSS_COST_SHARE
                tick.sessions = runtime.open_sessions if runtime is not None else 0
                if target:
                    tick.target_memory_kb, tick.target_sessions = target.pop()
            observe(tick)
    finally:
        if poller is not None:
            poller.kill(block=False)


def _poll_target(environment: Environment, latest: list[tuple[float, int]]) -> None:
    """The reference target's memory and open sessions (``GET /stats?all=1``), every few
    seconds; a server without them (not the reference target) is asked no more."""
    while True:
        gevent.sleep(TARGET_POLL_S)
        host = environment.host or ""
        base = host.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        base = base.split("/", 3)
        url = "/".join(base[:3]) + "/stats?all=1"
        try:
            with urllib.request.urlopen(url, timeout=5.0) as answer:
                body = json.loads(answer.read())
        except (OSError, ValueError):
            continue
        memory = body.get("memory_kb") if isinstance(body, dict) else None
        if not isinstance(memory, int | float):
            return
        latest[:] = [(float(memory), int(body.get("counters", {}).get("active", 0)))]
