"""The web UI tabs' live numbers equal what the summary computes from the written records."""

from __future__ import annotations

import csv
import io
import random

import pytest

from wsload.locust.live import LiveStats
from wsload.net.probes import ProbeResult
from wsload.protocol.tracker import TurnResult
from wsload.run.batch import Batch
from wsload.run.records import (
    ConnectionAttempt,
    HealthTick,
    ProbeRecord,
    Record,
    Sample,
    SessionEvent,
    TurnRecord,
    Who,
)
from wsload.run.summary import load_samples, percentile_table, render, turn_headline
from wsload.run.writer import ArrowWriter

WHO = Who(1, "s", "n0-1-1")


def turn_record(
    rng: random.Random, failure: str | None = None, at: float = 1.0, who: Who = WHO
) -> TurnRecord:
    def ms(low: float, high: float) -> float:
        return round(rng.uniform(low, high), 3)  # as written: the summary reads the file

    result = TurnResult(
        ok=failure is None,
        failures=[(failure, "late")] if failure else [],
        ttfe_ms=ms(50, 90),
        e2e_ms=None if failure else ms(200, 900),
        elapsed_ms=1000.0,
        first_ms={"agent_started": ms(50, 90)},
        gaps_ms=[ms(10, 40)],
        spans_ms=[],
        events=5,
        names=[],
        run_id=None,
        terminal=None,
    )
    return TurnRecord(at, who, 1, 1, 10, result)


def probe(name: str, outcome: str, failure: str | None = None) -> ProbeRecord:
    result = ProbeResult(name, failure is None, outcome, failure, 4.0, "AUTH_FAILED")
    return ProbeRecord(1.0, WHO, f"probe:{name}", "probe", result)


def sample_records(n: int = 400) -> list[Record]:
    rng = random.Random(7)
    records: list[Record] = []
    for _ in range(n):
        connect, auth = round(rng.uniform(1, 20), 3), round(rng.uniform(0.5, 5), 3)
        records.append(ConnectionAttempt(1.0, WHO, 1, connect, auth))
        failed = rng.random() < 0.1
        records.append(turn_record(rng, "event_timeout" if failed else None))
        records.append(HealthTick(1.0, 55.0, 1.0))
    records.append(ConnectionAttempt(1.0, WHO, 1, 3000.0, None, "refused", "connect"))
    records.append(probe("expired", "error_frame_close"))
    records.append(probe("expired", "error_frame_close"))
    records.append(probe("alg_none", "accepted", "auth_not_enforced"))
    return records


def write(folder, records: list[Record]) -> None:
    batch = Batch("n0")
    for record in records:
        batch.add(record, 1)
    writer = ArrowWriter(folder, "run")
    writer.write(batch)
    writer.close()


def test_turn_table_percentiles_equal_the_summary_of_the_same_rows(tmp_path):
    records = sample_records()
    write(tmp_path, records)
    live = LiveStats()
    for i in range(0, len(records), 37):  # batches, as the writer hands them over
        live.add_records(records[i : i + 37])
    expected = percentile_table(load_samples(tmp_path)).set_index("name")
    table = live.turn_table(digits=6)
    names = [r["name"] for r in table]
    assert names == ["turn:ttfe", "turn:agent_started", "turn:gap", "turn:e2e"]
    for r in table:
        want = expected.loc[r["name"]]
        assert r["count"] == want["count"] and r["fail"] == want["failures"]
        for ours, theirs in (("median", "p50"), ("p95", "p95"), ("p99", "p99")):
            assert r[ours] == pytest.approx(want[theirs], abs=1e-6)
    e2e = table[-1]
    assert e2e["failures"].startswith("event_timeout x") and e2e["fail"] > 0


def test_auth_table_has_latency_failures_by_id_and_probes_by_outcome():
    live = LiveStats()
    live.add_records(sample_records(50))
    table = live.auth_table()
    latency = {r["name"]: r for r in table if r["section"] == "latency"}
    assert set(latency) == {"connect", "auth"}
    assert latency["connect"]["count"] == 51 and latency["connect"]["fail"] == 1
    assert latency["connect"]["median"] is not None
    failures = [(r["name"], r["outcome"], r["count"]) for r in table if r["section"] == "failure"]
    assert failures == [("connect", "refused", 1)]
    probes = [(r["name"], r["outcome"], r["count"], r["fail"]) for r in table[-3:]]
    assert probes == [  # grouped over every probe, failing first; a failing probe apart
        ("probe:* (2 kinds)", "accepted (NOT ENFORCED)", 1, 1),
        ("probe:* (2 kinds)", "error_frame_close", 2, 0),
        ("probe:alg_none", "accepted (NOT ENFORCED)", 1, 1),
    ]


def test_csv_downloads_hold_the_same_rows_and_reset_forgets_the_run():
    live = LiveStats()
    live.add_records(sample_records(20))
    turns = list(csv.DictReader(io.StringIO(live.turn_csv())))
    assert [r["name"] for r in turns] == [r["name"] for r in live.turn_table()]
    assert int(turns[0]["count"]) == 20 and float(turns[0]["p95"]) > 0
    auth = list(csv.DictReader(io.StringIO(live.auth_csv())))
    assert len(auth) == len(live.auth_table())
    live.reset()
    assert live.turn_table() == [] and live.auth_table() == []


def test_a_sample_with_an_unreadable_latency_is_counted_and_breaks_nothing():
    live = LiveStats()
    live.add_samples(
        [Sample("event", "turn:ttfe", float("nan")), Sample("event", "turn:ttfe", 2.0)]
    )
    (only,) = live.turn_table()
    assert only["count"] == 2 and only["median"] == 2.0


def test_session_events_count_on_the_security_tab_only_when_they_are_security():
    live = LiveStats()
    live.add_records([SessionEvent(1.0, WHO, "session:isolation", 0.0, "foreign_event")])
    assert [(r["name"], r["outcome"]) for r in live.auth_table()] == [
        ("session:isolation", "foreign_event")
    ]


def timed_records(seconds: int = 30, per_second: int = 20) -> list[Record]:
    """Turns ending through ``seconds`` clock seconds, a tenth failing by two ids."""
    rng = random.Random(11)
    origin = 1_790_000_000.0
    records: list[Record] = [ConnectionAttempt(origin, WHO, 1, 2.0, 1.0)]
    for s in range(seconds):
        records.append(HealthTick(origin + s + 0.5, 10.0, 1.0, users=7))
        for k in range(per_second):
            failure = None
            if k == 0:
                failure = "event_timeout"
            elif k == 1 and s % 2:
                failure = "sequence_missing"
            who = Who(k, f"wsload-{k}", f"n0-{k}-{s}")
            records.append(turn_record(rng, failure, origin + s + k / per_second, who))
    return records


def test_headline_turns_per_second_and_failed_share_equal_the_summarys(tmp_path):
    records = timed_records()
    write(tmp_path, records)
    live = LiveStats()
    live.add_records(records)
    ours = live.headline(now=1_790_000_000.0 + 40)
    theirs = turn_headline(load_samples(tmp_path))
    assert ours["turns"] == theirs["turns"] == 600
    assert ours["failed_turns"] == theirs["failed_turns"] == 30 + 15
    assert ours["failed_share"] == pytest.approx(theirs["failed_share"]) == 45 / 600
    assert ours["turns_per_s"] == pytest.approx(theirs["turns_per_s"], rel=1e-6)
    assert ours["failures"] == [("event_timeout", 30), ("sequence_missing", 15)]
    assert ours["users"] == 7
    assert ours["e2e"]["median"] is not None and ours["ttfe"]["p95"] is not None
    text = render(tmp_path)
    assert "turns: 600 completed" in text and "failed turns: 45 (7.5% of turns)" in text


def test_turns_per_second_now_counts_the_last_whole_seconds_that_arrived():
    live = LiveStats()
    live.add_records(timed_records(seconds=30, per_second=20))
    origin = 1_790_000_000
    # seconds 18..27 are whole and surely arrived at 30.x: 20 turns each
    assert live.current_rate(origin + 30.4) == pytest.approx(20.0, abs=2)
    assert live.current_rate(origin + 60) == 0.0  # nothing ended in the last seconds
    assert LiveStats().current_rate(origin) is None


def test_series_per_second_has_turns_failures_by_id_percentiles_and_users():
    live = LiveStats()
    records = timed_records(seconds=30, per_second=20)
    live.add_records(records)
    series = live.series()
    assert series["bin_s"] == 1 and len(series["t"]) >= 30
    middle = series["t"].index(10)
    assert sum(series["turns_per_s"]) == 600  # each turn in the second it ended
    assert 14 <= series["turns_per_s"][middle] <= 26
    assert series["failed_per_s"]["event_timeout"][middle] == 1
    assert set(series["failed_per_s"]) == {"event_timeout", "sequence_missing"}
    assert series["users"][middle] == 7
    for key in ("ttfe_p50", "ttfe_p95", "e2e_p50", "e2e_p95"):
        assert series[key][middle] is not None
    assert series["e2e_p50"][middle] <= series["e2e_p95"][middle]
    wide = live.series(max_points=10)
    assert wide["bin_s"] == 4 and sum(wide["turns_per_s"]) * 4 == pytest.approx(600)
    cut = live.series(now=1_790_000_000.0 + 15.5)  # seconds still arriving are left out
    assert max(cut["t"]) < 14


def test_examples_name_the_first_failures_of_each_id_with_who_and_masked_detail():
    live = LiveStats()
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    who = Who(4, "wsload-4", "n0-4-9")
    live.add_records(timed_records(seconds=5))
    live.add_records(
        [SessionEvent(1.0, who, "session:isolation", 0.0, "foreign_event", f"token {jwt}")]
    )
    examples = live.examples()
    ids = [e["failure"] for e in examples]
    assert ids == ["event_timeout"] * 3 + ["sequence_missing"] * 2 + ["foreign_event"]
    first = examples[0]
    assert first["count"] == 5 and first["name"] == "turn:e2e"
    assert (first["user"], first["subject"], first["session"]) == (0, "wsload-0", "n0-0-0")
    assert jwt not in examples[-1]["detail"] and "***jwt***" in examples[-1]["detail"]
    rows = list(csv.DictReader(io.StringIO(live.examples_csv())))
    assert [r["failure"] for r in rows] == ids and rows[-1]["session"] == "n0-4-9"
