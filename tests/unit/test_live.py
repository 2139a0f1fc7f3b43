"""The web UI tabs' live numbers equal what the summary computes from the written rows."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

import pytest

from wsload.locust.live import LiveStats
from wsload.run.recorder import ROW_FIELDS, Recorder
from wsload.run.summary import load_samples, percentile_table


def row(kind: str, name: str, ms: float, ok: int = 1, failure: str = "", detail: str = ""):
    values: dict[str, Any] = dict.fromkeys(ROW_FIELDS, "")
    values.update(node="n0", ts="1.0", user=1, kind=kind, name=name, ms=f"{ms:.3f}")
    values.update(ok=ok, failure=failure, users=1, bytes=0, detail=detail)
    return tuple(values[f] for f in ROW_FIELDS)


def sample_rows(n: int = 400) -> list[tuple[Any, ...]]:
    rng = random.Random(7)
    rows = []
    for _ in range(n):
        rows.append(row("connect", "connect", rng.uniform(1, 20)))
        rows.append(row("auth", "auth", rng.uniform(0.5, 5)))
        rows.append(row("event", "turn:agent_started", rng.uniform(50, 90)))
        rows.append(row("event", "turn:ttfe", rng.uniform(50, 90)))
        rows.append(row("gap", "turn:gap", rng.uniform(10, 40)))
        if rng.random() < 0.1:
            rows.append(row("turn", "turn:e2e", 1000.0, 0, "event_timeout"))
        else:
            rows.append(row("turn", "turn:e2e", rng.uniform(200, 900)))
        rows.append(row("health", "health:cpu", 55.0))
    rows.append(row("connect", "connect", 3000.0, 0, "refused"))
    rows.append(row("probe", "probe:expired", 4.0, 1, detail="error_frame_close: AUTH_FAILED"))
    rows.append(row("probe", "probe:expired", 4.0, 1, detail="error_frame_close: AUTH_FAILED"))
    rows.append(row("probe", "probe:alg_none", 4.0, 0, "auth_not_enforced", "accepted: 101"))
    return rows


def test_turn_table_percentiles_equal_the_summary_of_the_same_rows(tmp_path):
    rows = sample_rows()
    recorder = Recorder(tmp_path, "run")
    recorder.add_many(rows)
    recorder.close()
    live = LiveStats()
    for i in range(0, len(rows), 37):  # batches, as the master receives them
        live.add_rows(rows[i : i + 37])
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
    live.add_rows(sample_rows(50))
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
    live.add_rows([list(r) for r in sample_rows(20)])  # a worker's batch arrives as lists
    turns = list(csv.DictReader(io.StringIO(live.turn_csv())))
    assert [r["name"] for r in turns] == [r["name"] for r in live.turn_table()]
    assert int(turns[0]["count"]) == 20 and float(turns[0]["p95"]) > 0
    auth = list(csv.DictReader(io.StringIO(live.auth_csv())))
    assert len(auth) == len(live.auth_table())
    live.reset()
    assert live.turn_table() == [] and live.auth_table() == []


def test_a_row_with_an_unreadable_latency_is_counted_and_breaks_nothing():
    live = LiveStats()
    bad = list(row("event", "turn:ttfe", 1.0))
    bad[ROW_FIELDS.index("ms")] = ""
    live.add_rows([bad, row("event", "turn:ttfe", 2.0)])
    (only,) = live.turn_table()
    assert only["count"] == 2 and only["median"] == 2.0
