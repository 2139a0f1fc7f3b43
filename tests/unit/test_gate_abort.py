"""AbortWatch: trips at the first row that makes an abort threshold unmeetable, and agrees
with the end-of-run gate over the same rows."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.gate.abort import AbortWatch
from wsload.gate.config import GateConfig
from wsload.gate.evaluate import FAIL, evaluate
from wsload.gate.thresholds import parse_threshold

T0 = 1_800_000_000.0


def watch(*texts: str, warmup_s: float = 0.0) -> AbortWatch:
    return AbortWatch([parse_threshold(t) for t in texts], warmup_s=warmup_s)


def test_a_zero_count_trips_at_the_first_matching_failure():
    w = watch("refused.count == 0 abort")
    assert w.observe("connect", True, None, 3.0) is None
    assert w.observe("connect", False, "tcp_timeout", 3.0) is None
    reason = w.observe("connect", False, "refused", 3.0)
    assert reason is not None
    assert str(reason.threshold) == "refused.count == 0 abort"
    assert "refused.count == 0 abort" in reason.message
    assert "connect failed with refused" in reason.message
    assert w.tripped is reason
    assert not w.active
    assert w.observe("connect", False, "refused", 3.0) is None  # reported once


def test_a_count_limit_trips_on_the_sample_that_exceeds_it():
    le = watch("auth.failures <= 2 abort")
    lt = watch("auth.failures < 2 abort")
    trips_le = [le.observe("auth", False, "auth_timeout", 1.0) for _ in range(3)]
    trips_lt = [lt.observe("auth", False, "auth_timeout", 1.0) for _ in range(3)]
    assert [t is not None for t in trips_le] == [False, False, True]
    assert [t is not None for t in trips_lt] == [False, True, False]
    assert trips_le[2].observed == "3 samples"


def test_the_security_default_watches_only_probe_samples():
    w = AbortWatch(GateConfig().effective())
    assert w.observe("auth", False, "auth_not_enforced", 1.0) is None
    assert w.observe("probe:expired", True, None, 1.0) is None
    assert w.observe("probe:no_token", False, "auth_not_enforced", 1.0) is not None


def test_a_max_trips_on_a_successful_sample_above_it_as_the_recorder_rounds_it():
    w = watch("turn:ttfe max <= 2s abort")
    assert w.observe("turn:ttfe", False, "x", 9000.0) is None  # times are of ok samples
    assert w.observe("turn:e2e", True, None, 9000.0) is None
    assert w.observe("turn:ttfe", True, None, 2000.0004) is None  # written as 2000.000
    reason = w.observe("turn:ttfe", True, None, 2000.0006)
    assert reason is not None
    assert reason.observed == "max 2000.001 ms"
    strict = watch("auth max < 100ms abort")
    assert strict.observe("auth", True, None, 100.0) is not None


def test_a_min_trips_below_it():
    w = watch("connect min >= 1ms abort")
    assert w.observe("connect", True, None, 1.0) is None
    assert w.observe("connect", True, None, 0.5) is not None


def test_without_abort_thresholds_the_watch_is_inactive():
    w = watch("refused.count == 0", "turn:e2e p95 < 5s")
    assert not w.active
    assert w.observe("connect", False, "refused", 1.0) is None


def test_rows_inside_the_warmup_do_not_trip():
    w = watch("refused.count == 0 abort", warmup_s=10.0)
    assert w.observe("connect", True, None, 1.0, ts=T0) is None
    assert w.observe("connect", False, "refused", 1.0, ts=T0 + 9.9) is None
    assert w.observe("connect", False, "refused", 1.0, ts=T0 + 10.0) is not None


def test_an_earlier_row_moves_the_warmup_back_and_releases_held_rows():
    w = watch("refused.count == 0 abort", warmup_s=10.0)
    assert w.observe("connect", True, None, 1.0, ts=T0 + 5) is None
    assert w.observe("connect", False, "refused", 1.0, ts=T0 + 12) is None  # in warm-up so far
    reason = w.observe("turn:e2e", True, None, 1.0, ts=T0)  # the first sample arrives late
    assert reason is not None


rows = st.lists(
    st.tuples(
        st.sampled_from(["connect", "auth", "turn:ttfe", "probe:x"]),
        st.booleans(),
        st.sampled_from([None, "refused", "auth_not_enforced", "auth_timeout"]),
        st.floats(0, 3000, allow_nan=False).map(lambda ms: float(f"{ms:.3f}")),
        st.floats(0, 30, allow_nan=False),
    ),
    max_size=40,
)
abortable = st.sampled_from(
    [
        "refused.count == 0 abort",
        "refused.count <= 2 abort",
        "auth.failures < 3 abort",
        "probe.auth_not_enforced == 0 abort",
        "all.count <= 10 abort",
        "turn:ttfe max < 2s abort",
        "turn:ttfe max <= 1500ms abort",
        "connect min >= 100ms abort",
    ]
)


@settings(max_examples=300)
@given(rows, abortable, st.sampled_from([0.0, 5.0]))
def test_the_watch_trips_exactly_when_the_final_gate_fails_the_threshold(rows, text, warmup_s):
    threshold = parse_threshold(text)
    w = AbortWatch([threshold], warmup_s=warmup_s)
    tripped = False
    for name, ok, failure, ms, offset in rows:
        ok = ok and failure is None
        tripped = tripped or w.observe(name, ok, failure, ms, ts=T0 + offset) is not None
    frame = pd.DataFrame(
        [
            {"ts": T0 + off, "name": n, "ok": ok and f is None, "failure": f, "ms": ms}
            for n, ok, f, ms, off in rows
        ],
        columns=["ts", "name", "ok", "failure", "ms"],
    )
    frame["failure"] = frame["failure"].astype("string")
    frame["ok"] = frame["ok"].astype(bool)
    (row,) = evaluate(
        frame, GateConfig((threshold,), warmup_s=warmup_s, security=False, run_checks=False)
    ).rows
    assert tripped == (row.verdict == FAIL), (row, rows)


def test_the_security_defaults_need_only_failed_rows_unless_there_is_a_warm_up():
    from wsload.gate import build_config
    from wsload.gate.abort import AbortWatch

    config = build_config()
    assert AbortWatch(config.effective()).failures_only
    assert not AbortWatch(config.effective(), warmup_s=5).failures_only
    slow = build_config(thresholds=["turn:e2e max < 5s abort"])
    assert not AbortWatch(slow.effective()).failures_only
