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
from wsload.run.recorder import CsvWriter
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
from wsload.run.summary import load_samples, percentile_table

WHO = Who(1, "s", "n0-1-1")


def turn_record(rng: random.Random, failure: str | None = None) -> TurnRecord:
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
    return TurnRecord(1.0, WHO, 1, 1, 10, result)


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
    writer = CsvWriter(folder, "run")
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
    probes = {(r["name"], r["outcome"]): (r["count"], r["fail"]) for r in table[-2:]}
    assert probes == {
        ("alg_none", "accepted (NOT ENFORCED)"): (1, 1),
        ("expired", "error_frame_close"): (2, 0),
    }


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
