"""wsload's fast stats logging leaves Locust's stats exactly as Locust's own logging would.

Run in a subprocess: importing Locust monkey-patches the whole process with gevent.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Both scripts end by comparing every entry (and the total) field by field.
SAME = textwrap.dedent(
    """
    def same(mine, theirs, fields):
        for key, entry in list(theirs.entries.items()) + [("total", theirs.total)]:
            other = mine.total if key == "total" else mine.entries[key]
            for field in fields:
                a, b = getattr(other, field), getattr(entry, field)
                if isinstance(a, float):
                    assert abs(a - b) < 1e-6 * max(1.0, abs(b)), (key, field, a, b)
                else:
                    assert a == b, (key, field)
    """
)

CHECK = SAME + textwrap.dedent(
    """
    import random, time
    from locust import stats as locust_stats
    from wsload.locust.glue import log_samples

    time.time = lambda: 1795459291.75  # one clock for both, so the per-second counts match
    rng = random.Random(11)
    for cache in (False, True):
        mine = locust_stats.RequestStats(use_response_times_cache=cache)
        theirs = locust_stats.RequestStats(use_response_times_cache=cache)
        for turn in range(300):
            by_name = {}
            for name in ("turn:ttfe", "turn:gap", "turn:gap", "turn:e2e", "turn:tool"):
                ms = rng.choice([rng.uniform(0, 99), rng.uniform(100, 9999), rng.uniform(1e4, 1e6)])
                by_name.setdefault(name, []).append(ms)
            lengths = {"turn:e2e": rng.randrange(500)}
            log_samples(mine, "WS", by_name, lengths)
            for name, values in by_name.items():
                for i, ms in enumerate(values):
                    length = lengths.get(name, 0) if i == len(values) - 1 else 0
                    theirs.log_request("WS", name, ms, length)
        same(mine, theirs, ("num_requests", "num_none_requests", "total_response_time",
             "min_response_time", "max_response_time", "response_times", "num_reqs_per_sec",
             "total_content_length", "last_request_timestamp"))
    print("same")
    """
)


BATCHED = SAME + textwrap.dedent(
    """
    import random, time
    from locust import stats as locust_stats
    from wsload.locust.glue import TurnStats

    clock = [1795459291.0]
    time.time = lambda: clock[0]
    rng = random.Random(5)
    mine = locust_stats.RequestStats(use_response_times_cache=True)
    theirs = locust_stats.RequestStats(use_response_times_cache=True)
    batched = TurnStats(mine)
    for turn in range(400):
        clock[0] += rng.choice([0.001, 0.01, 0.3, 1.7])  # turns within a second and across
        by_name = {}
        for name in ("turn:ttfe", "turn:gap", "turn:gap", "turn:e2e"):
            by_name.setdefault(name, []).append(rng.uniform(0, 3000))
        length = rng.randrange(500)
        failed = turn % 7 == 0
        for name, values in by_name.items():
            for i, ms in enumerate(values):
                theirs.log_request("WS", name, ms, length if name == "turn:e2e" else 0)
        if failed:
            theirs.log_error("WS", "turn:e2e", "agent_error")
        error = ("turn:e2e", "agent_error") if failed else None
        batched.add(by_name, {"turn:e2e": length}, error)
        if turn % 50 == 0:
            batched.flush()  # a timed flush or a worker's report, mid-second
    batched.flush()
    same(mine, theirs, ("num_requests", "total_response_time", "min_response_time",
         "max_response_time", "response_times", "num_reqs_per_sec", "num_failures",
         "num_fail_per_sec", "total_content_length", "last_request_timestamp",
         "response_times_cache"))
    assert {k: v.occurrences for k, v in mine.errors.items()} == {
        k: v.occurrences for k, v in theirs.errors.items()
    }
    print("same")
    """
)


def test_fast_logging_leaves_locusts_stats_as_its_own_logging_would():
    run = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "same", run.stderr[-2000:]


def test_batched_turn_stats_match_per_sample_logging_across_seconds_and_flushes():
    run = subprocess.run(
        [sys.executable, "-c", BATCHED], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and run.stdout.strip() == "same", run.stderr[-2000:]
