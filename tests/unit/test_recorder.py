"""Records written to the results tables read back, in the long view, as their samples,
whatever text they carry."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.net.probes import ProbeResult
from wsload.protocol.tracker import TurnResult
from wsload.run.batch import Batch
from wsload.run.recorder import COLUMNS, write_run_json
from wsload.run.records import (
    ConnectionAttempt,
    HealthTick,
    HttpRequest,
    ProbeRecord,
    SessionEvent,
    TurnRecord,
    Who,
)
from wsload.run.summary import load_samples
from wsload.run.writer import ArrowWriter

free_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
TS = 1795459291.123456


def turn(
    subject: str = "s",
    detail: str = "",
    first: dict[str, float] | None = None,
    gaps: list[float] | None = None,
    spans: list[tuple[str, float]] | None = None,
    ok: bool = True,
    intended: float | None = None,
    ttfe: float | None = 1.0,
    at: float = TS,
) -> TurnRecord:
    result = TurnResult(
        ok=ok,
        failures=[] if ok else [("agent_error", detail)],
        ttfe_ms=ttfe,
        e2e_ms=12.5,
        elapsed_ms=13.0,
        first_ms=first if first is not None else {"agent_started": 1.0},
        gaps_ms=gaps if gaps is not None else [2.5],
        spans_ms=spans or [],
        events=6,
        names=[],
        run_id=None,
        terminal=None,
    )
    return TurnRecord(at, Who(3, subject, "w0-3-1"), 7, 4, 64, result, intended)


def write(folder, *records, users: int = 20):
    batch = Batch("w0")
    for record in records:
        batch.add(record, users)
    write_run_json(folder, {"run_id": "run-1"})
    writer = ArrowWriter(folder, "run-1")
    writer.write(batch)
    writer.close()
    return load_samples(folder)


def expected_rows(record):
    return [(s.kind, s.name, s.ms, s.failure) for s in record.samples()]


def read_rows(frame):
    return [
        (r.kind, r.name, r.ms, None if pd.isna(r.failure) or r.failure == "" else r.failure)
        for r in frame.itertuples()
    ]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(free_text, free_text), min_size=1, max_size=8))
def test_subjects_and_details_with_commas_quotes_and_newlines_read_back(tmp_path_factory, texts):
    folder = tmp_path_factory.mktemp("run")
    records = [
        SessionEvent(TS + i, Who(i, f"s{i}{subject}", "x"), "session:error", 1.0, "server_error", d)
        if i % 2
        else turn(f"s{i}{subject}", d, ok=False, at=TS + i)
        for i, (subject, d) in enumerate(texts)
    ]
    samples = load_samples_of(folder, records)
    assert list(samples.columns) == list(COLUMNS)
    failed = samples.loc[samples["ok"] == 0]
    assert len(failed) == len(texts)
    for i, (subject, detail) in enumerate(texts):
        got = failed.iloc[i]
        assert got["subject"] == f"s{i}{subject}"
        assert (got["detail"] if isinstance(got["detail"], str) else "") == detail[:300]
        assert got["run_id"] == "run-1" and got["v"] == 2 and got["users"] == 20


def load_samples_of(folder, records):
    return write(folder, *records)


def test_numbers_keep_their_value(tmp_path):
    samples = write(
        tmp_path,
        SessionEvent(TS, Who(1, "a", "x"), "ping", 0.001),
        SessionEvent(TS, Who(1, "b", "x"), "ping", 123456.789),
    )
    assert list(samples["ms"]) == [0.001, 123456.789]
    assert samples["ts"].iloc[0] == TS


event_names = st.sampled_from(["agent_started", "tool", "odd,name", '"q"', "100%", "run.end"])


@settings(max_examples=25, deadline=None)
@given(
    free_text,
    free_text,
    st.dictionaries(event_names, st.floats(0, 1e6, allow_nan=False), max_size=5),
    st.lists(st.floats(0, 1e6, allow_nan=False), max_size=6),
    st.lists(st.tuples(event_names, st.floats(0, 1e6, allow_nan=False)), max_size=3),
    st.booleans(),
    st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
    st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
)
def test_a_turn_is_written_as_its_samples(
    tmp_path_factory, subject, detail, first, gaps, spans, ok, intended, ttfe
):
    folder = tmp_path_factory.mktemp("run")
    record = turn(f"s{subject}", detail, first, gaps, spans, ok, intended, ttfe)
    before = SessionEvent(TS - 1, Who(1, "before", "x"), "ping", 1.0)
    after = SessionEvent(TS + 1, Who(1, "after", "x"), "ping", 2.0)
    got = write(folder, before, record, after)  # the long view is in time order
    want = [*expected_rows(before), *expected_rows(record), *expected_rows(after)]
    rows = read_rows(got)
    assert len(rows) == len(want)
    for (kind, name, ms, failure), (k, n, m, f) in zip(rows, want, strict=True):
        assert (kind, name, failure) == (k, n, f)
        assert ms == pytest.approx(m, abs=1e-3, rel=1e-7)  # float32: 7 significant digits
    e2e = got.loc[got["name"] == "turn:e2e"].iloc[0]
    assert e2e["bytes"] == 64 and e2e["events"] == 6 and e2e["inflight"] == 4
    assert e2e["turn"] == 7 and e2e["session"] == "w0-3-1"


def test_each_record_kind_has_todays_columns(tmp_path):
    who = Who(2, "sub", "w0-2-1")
    probe = ProbeResult("expired", True, "http_401", None, 2.0, "refused", 401, None)
    got = write(
        tmp_path,
        ConnectionAttempt(TS, who, 3, 2.0, None, "refused", "connect", "no", 503),
        ConnectionAttempt(TS, who, 1, 2.0, 1.0, "auth_rejected", "auth", "x", None, 1008),
        ProbeRecord(TS, who, "probe:expired", "probe", probe),
        HttpRequest(TS, who, "http:login", 5.0, "http_500", "boom", 500, 17),
        HealthTick(TS, 55.0, 1.25, 9),
        users=5,
    )
    rows = got.to_dict("records")
    assert [(r["kind"], r["name"], r["ok"]) for r in rows] == [
        ("connect", "connect", 0),
        ("connect", "connect", 1),
        ("auth", "auth", 0),
        ("probe", "probe:expired", 1),
        ("http", "http:login", 0),
        ("health", "health:cpu", 1),
        ("health", "health:lag", 1),
        ("health", "health:users", 1),
    ]
    assert rows[0]["http_status"] == 503 and rows[0]["inflight"] == 3
    assert pd.isna(rows[1]["close_code"]) and rows[2]["close_code"] == 1008  # on the failed row
    assert rows[3]["http_status"] == 401 and rows[3]["detail"] == "http_401: refused"
    assert rows[4]["http_status"] == 500 and rows[4]["bytes"] == 17
    assert [r["ms"] for r in rows[5:]] == [55.0, 1.25, 9.0]
    assert {r["users"] for r in rows} == {5}


def test_the_user_count_changes_where_the_batch_says(tmp_path):
    batch = Batch("n0")
    for i, users in enumerate((1, 1, 2, 3, 3)):
        batch.add(SessionEvent(TS + i, Who(1, "s", "x"), "ping", 1.0), users)
    writer = ArrowWriter(tmp_path, "r")
    writer.write(batch)
    writer.close()
    assert list(load_samples(tmp_path)["users"]) == [1, 1, 2, 3, 3]


def test_loading_some_columns_reads_just_those_with_the_same_values(tmp_path):
    whole = write(
        tmp_path,
        SessionEvent(TS, Who(1, "a,b", "x"), "session:error", 1.0, "server_error", 'say "x"'),
        SessionEvent(TS + 1, Who(1, "c", "x"), "ping", 3.25),
    )
    some = load_samples(tmp_path, ("name", "ok", "ms", "detail"))
    assert list(some.columns) == ["name", "ms", "ok", "detail"]  # file order
    pd.testing.assert_frame_equal(some, whole[list(some.columns)])


def test_a_tick_of_a_run_that_holds_sessions_carries_memory_and_sessions(tmp_path):
    tick = HealthTick(TS, 10.0, 2.0, None, memory_kb=81234.0, sessions=5000,
                      target_memory_kb=120000.0, target_sessions=4990)  # fmt: skip
    rows = write(tmp_path, tick, users=5).to_dict("records")
    assert [(r["name"], r["ms"]) for r in rows] == [
        ("health:cpu", 10.0),
        ("health:lag", 2.0),
        ("health:memory_kb", 81234.0),
        ("health:sessions", 5000.0),
        ("health:target_memory_kb", 120000.0),
        ("health:target_sessions", 4990.0),
    ]
