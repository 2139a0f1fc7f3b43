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
    from wsload.locust.stats import log_samples

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
    from wsload.locust.stats import StatsBatch
    from wsload.net.probes import ProbeResult
    from wsload.protocol.tracker import TurnResult
    from wsload.run.records import ConnectionAttempt, ProbeRecord, SessionEvent, TurnRecord, Who

    clock = [1795459291.0]
    time.time = lambda: clock[0]
    rng = random.Random(5)
    mine = locust_stats.RequestStats(use_response_times_cache=True)
    theirs = locust_stats.RequestStats(use_response_times_cache=True)
    batched = StatsBatch(mine)
    who = Who(1, "s", "x")

    def turn(failed):
        ms = lambda: rng.uniform(0, 3000)
        failures = [("foreign_event", "other"), ("agent_error", "x")] if failed else []
        result = TurnResult(
            ok=not failed, failures=failures, ttfe_ms=ms(), e2e_ms=ms(), elapsed_ms=ms(),
            first_ms={"agent_started": ms(), "tool,odd": ms()}, gaps_ms=[ms(), ms()],
            spans_ms=[("tool", ms())], events=5, names=[], run_id=None, terminal=None,
        )
        intended = ms() if rng.random() < 0.5 else None
        stream = {} if rng.random() < 0.5 else dict(  # a streamed answer, half the time
            ttft_ms=ms(), itl_ms=[ms(), ms()], tpot_ms=ms(), output_tokens=rng.randrange(50),
            tokens_per_s=ms(),
        )
        return TurnRecord(clock[0], who, 1, 1, rng.randrange(500), result, intended, **stream)

    def other(i):
        failure = "refused" if i % 3 == 0 else None
        if i % 4 == 0:
            phase = "auth" if failure else None
            return ConnectionAttempt(clock[0], who, 1, 3.5, 1.5, failure, phase)
        if i % 4 == 1:
            return SessionEvent(clock[0], who, "ping", rng.uniform(0, 50), failure)
        result = ProbeResult("expired", True, "http_401", failure, 2.0, "d")
        return ProbeRecord(clock[0], who, "probe:expired", "probe", result)

    for i in range(600):
        clock[0] += rng.choice([0.001, 0.01, 0.3, 1.7])  # records within a second and across
        record = turn(i % 7 == 0) if i % 2 else other(i)
        for sample in record.samples():  # Locust's own logging, one sample at a time
            length = record.sent_bytes if sample.kind == "turn" else 0
            theirs.log_request("WS", sample.name, sample.ms, length)
            if sample.failure is not None:
                theirs.log_error("WS", sample.name, sample.failure)
        batched.add(record)
        if i % 7 == 3:
            batched.take_apart()  # the 50 ms step: taken apart now, logged later
        if i % 50 == 0:
            batched.flush()  # a timed flush or a worker's report, mid-second
    batched.flush()
    same(mine, theirs, ("num_requests", "total_response_time", "min_response_time",
         "max_response_time", "response_times", "num_reqs_per_sec", "num_failures",
         "num_fail_per_sec", "total_content_length", "last_request_timestamp",
         "response_times_cache"))
    assert {k: v.occurrences for k, v in mine.errors.items()} == {
        k: v.occurrences for k, v in theirs.errors.items()
    }
    assert len(mine.errors) >= 3  # foreign_event names the turn; refused; a probe's failure
    print("same")
    """
)


def test_fast_logging_leaves_locusts_stats_as_its_own_logging_would():
    run = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "same", run.stderr[-2000:]


def test_batched_records_match_per_sample_logging_across_seconds_and_flushes():
    run = subprocess.run(
        [sys.executable, "-c", BATCHED], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and run.stdout.strip() == "same", run.stderr[-2000:]


VECTORED = textwrap.dedent(
    """
    import math, random
    from collections import Counter
    from locust import stats as locust_stats
    from wsload.locust.stats import VECTOR_MIN, figures_of

    rng = random.Random(3)
    ties = [k + 0.5 for k in range(100)] + [k * 10 + 5.0 for k in range(10, 100)]
    ties += [k * 100 + 50.0 for k in range(10, 100)] + [k * 1000 + 500.0 for k in range(10, 99)]
    near = [math.nextafter(v, to) for v in ties for to in (0.0, 1e9)]
    edges = [0.0, 99.49999999999999, 99.5, 100.0, 999.4999, 999.5, 1000.0, 9999.5, 10000.0]
    spread = [rng.choice([rng.uniform(0, 99), rng.uniform(100, 9999), rng.uniform(1e4, 1e6)])
              for _ in range(20000)]
    for values in (ties, near, edges * 10, spread, spread[:VECTOR_MIN - 1]):
        count, total, low, high, buckets = figures_of(values)
        assert buckets == Counter(map(locust_stats.bucket_response_time, values)), values[:5]
        assert all(type(k) is int for k in buckets)
        assert (count, low, high) == (len(values), min(values), max(values))
        assert abs(total - sum(values)) < 1e-9 * max(1.0, sum(values))
    swapped = lambda ms: int(ms) // 7  # a bucketing a user swapped in is called as is
    assert figures_of(spread, swapped)[4] == Counter(map(swapped, spread))
    print("same")
    """
)


def test_bucketing_many_values_at_once_counts_exactly_as_locusts_own_function():
    run = subprocess.run(
        [sys.executable, "-c", VECTORED], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and run.stdout.strip() == "same", run.stderr[-2000:]
