"""Held sessions' heartbeats keep their phase and spread out instead of bunching."""

from __future__ import annotations

import random

from wsload.net.ping_schedule import PING_JITTER, next_ping_at

INTERVAL = 25.0


def test_a_ping_on_time_is_followed_one_jittered_interval_later():
    rng = random.Random(1)
    gaps = [next_ping_at(100.0, 100.0, INTERVAL, rng) - 100.0 for _ in range(2000)]
    low, high = INTERVAL * (1 - PING_JITTER), INTERVAL * (1 + PING_JITTER)
    assert all(low <= gap <= high for gap in gaps)
    assert max(gaps) - min(gaps) > INTERVAL * PING_JITTER  # jittered, not a fixed step


def test_a_late_ping_keeps_its_phase_instead_of_the_moment_it_went_out():
    rng = random.Random(2)
    # due at 100 and 103, both sent late at 108 after a stall: the next ones stay apart
    first = next_ping_at(100.0, 108.0, INTERVAL, random.Random(3))
    second = next_ping_at(103.0, 108.0, INTERVAL, random.Random(3))
    assert abs((second - first) - 3.0) < 1e-9
    assert next_ping_at(100.0, 108.0, INTERVAL, rng) >= 100.0 + INTERVAL * (1 - PING_JITTER)


def test_pings_late_by_more_than_an_interval_start_again_spread_over_one():
    rng = random.Random(4)
    now = 1000.0
    nexts = [next_ping_at(900.0 + i * 0.001, now, INTERVAL, rng) for i in range(2000)]
    assert all(now <= at <= now + INTERVAL * (1 + PING_JITTER) for at in nexts)
    # a thousand sessions a stall left due at once do not all ping at one moment again
    buckets = {int((at - now) // 1.0) for at in nexts}
    assert len(buckets) >= 20


def test_sessions_opened_together_drift_apart_over_the_hold():
    rng = random.Random(5)
    times = [0.0] * 500  # the worst case: every session due at the same moment
    for _ in range(20):
        times = [next_ping_at(t, t, INTERVAL, rng) for t in times]
    spread = max(times) - min(times)
    assert spread > INTERVAL * PING_JITTER * 2  # no longer one burst
