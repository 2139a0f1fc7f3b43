"""The results tables: what a cut file still loads, what a crashed run says, and that the
out-of-core summary and gate (DuckDB) give the in-memory (pandas) numbers."""

from __future__ import annotations

import json
import random
import shutil

import pyarrow as pa
import pytest

from wsload.analysis import load_run
from wsload.gate.config import GateConfig
from wsload.gate.evaluate import evaluate, evaluate_run
from wsload.gate.thresholds import parse_threshold
from wsload.net.probes import ProbeResult
from wsload.protocol.tracker import TurnResult
from wsload.run.batch import Batch
from wsload.run.columns import TABLES, TURNS, batches_of
from wsload.run.export import export_csv
from wsload.run.recorder import write_run_json
from wsload.run.records import (
    ConnectionAttempt,
    HealthTick,
    ProbeRecord,
    SessionEvent,
    TurnRecord,
    Who,
)
from wsload.run.summary import load_samples, render
from wsload.run.tables import read_stream
from wsload.run.writer import ArrowWriter

T0 = 1_800_000_000.0


def a_turn(rng: random.Random, at: float, number: int) -> TurnRecord:
    failed = rng.random() < 0.1
    events = {"agent_started": rng.uniform(5, 50), "tool_executing": rng.uniform(50, 80)}
    result = TurnResult(
        ok=not failed,
        failures=[(rng.choice(["agent_error", "turn_timeout"]), 'it, "broke"')] if failed else [],
        ttfe_ms=events["agent_started"],
        e2e_ms=None if failed else rng.uniform(80, 300),
        elapsed_ms=rng.uniform(80, 900),
        first_ms=events,
        gaps_ms=[round(rng.expovariate(0.1), 3) for _ in range(rng.randint(0, 6))],
        spans_ms=[("tool", rng.uniform(1, 30))] * rng.randint(0, 2),
        events=rng.randint(3, 9),
        names=[],
        run_id=None,
        terminal="agent_completed",
    )
    who = Who(number % 7, f"wsload-{number % 7}", f"n-{number % 7}-1")
    intended = rng.uniform(80, 400) if number % 3 == 0 else None
    return TurnRecord(at, who, number, 3, 90, result, intended)


def seconds_of_records(seconds: int = 12, seed: int = 7) -> list[Batch]:
    """A run's records, one batch per second, as a recorder hands them to the writer."""
    rng = random.Random(seed)
    batches = []
    number = 0
    for second in range(seconds):
        batch = Batch("w1")
        at = T0 + second
        if second < 3:
            refused = rng.random() < 0.3
            batch.add(
                ConnectionAttempt(
                    at, Who(second, f"wsload-{second}", f"n-{second}-1"), 1, rng.uniform(1, 9),
                    None if refused else rng.uniform(0, 2), "auth_rejected" if refused else None,
                    "auth" if refused else None, "no", None, 1008 if refused else None,
                ),
                second + 1,
            )  # fmt: skip
        for _ in range(rng.randint(20, 40)):
            number += 1
            batch.add(a_turn(rng, at + rng.random(), number), 7)
        if second == 5:
            probe = ProbeResult("expired", True, "http_401", None, 2.0, "refused", 401)
            batch.add(ProbeRecord(at, Who(0, "p", ""), "probe:expired", "probe", probe), 7)
            batch.add(SessionEvent(at, Who(1, "s", "x"), "session:refresh", 3.5), 7)
        batch.add(HealthTick(at, rng.uniform(10, 90), rng.uniform(0, 3), 7), 7)
        batches.append(batch)
    return batches


def write_run(folder, *, close: bool = True, stopped: bool = True) -> ArrowWriter:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"run_id": "r-1", "started": T0, "stopped": None}
    write_run_json(folder, meta)
    writer = ArrowWriter(folder, "r-1")
    for batch in seconds_of_records():
        writer.write(batch)
    if close:
        writer.close()
    if stopped:
        write_run_json(folder, {**meta, "stopped": T0 + 12.5})
    return writer


THRESHOLDS = (
    "turn:e2e p50 < 200ms",
    "turn:e2e p95 < 10s",
    "turn:e2e p99 < 250ms",
    "turn:e2e max < 1s",
    "turn:e2e mean < 150ms",
    "turn:gap p99 < 40ms",
    "turn:tool p90 < 30ms",
    "turn:ttfe min >= 0ms",
    "turn:e2e_intended p95 < 1s",
    "turn:e2e failure_rate < 5%",
    "turn:e2e count > 10",
    "auth failures == 0",
    "turn:e2e rate > 20/s",
    "goodput >= 50%",
    "goodput count > 5",
    "conect p95 < 1s",
)


def config(**more) -> GateConfig:
    thresholds = tuple(parse_threshold(t) for t in THRESHOLDS)
    limits = {"turn:ttfe": 40.0, "turn:gap": 30.0, "turn:tool": 20.0, "turn:e2e": 280.0}
    return GateConfig(
        thresholds=thresholds, security=True, goodput_limits_ms=limits, run_checks=False, **more
    )


@pytest.mark.parametrize("warmup", [0.0, 4.0])
def test_the_gate_over_the_tables_gives_the_in_memory_gates_numbers(tmp_path, warmup):
    write_run(tmp_path)
    over_tables = evaluate_run(tmp_path, config(warmup_s=warmup))
    in_memory = evaluate(load_samples(tmp_path), config(warmup_s=warmup), stopped=T0 + 12.5)
    assert over_tables.samples == in_memory.samples > 0
    assert (over_tables.window_start, over_tables.window_end) == (
        in_memory.window_start,
        in_memory.window_end,
    )
    for mine, theirs in zip(over_tables.rows, in_memory.rows, strict=True):
        assert mine.threshold == theirs.threshold
        assert (mine.observed, mine.verdict, mine.detail) == (
            theirs.observed,
            theirs.verdict,
            theirs.detail,
        )
    verdicts = {row.verdict for row in over_tables.rows}
    assert {"pass", "fail", "not measured"} <= verdicts  # the checks tell things apart


def test_the_summary_over_the_tables_reads_as_over_the_exported_csv(tmp_path):
    run = tmp_path / "run"
    write_run(run, stopped=False)  # a crash: the warning must come from both paths
    exported = tmp_path / "csv"
    exported.mkdir()
    shutil.copy(run / "run.json", exported / "run.json")
    rows = export_csv(run, exported / "samples.csv")
    assert rows == len(load_samples(run))
    over_tables = render(run).splitlines()
    over_csv = render(exported).splitlines()
    assert over_tables[1:] == over_csv[1:]
    assert over_tables[1].startswith("WARNING: This run did not stop cleanly")
    assert any(line.startswith("turn:gap") for line in over_tables)
    assert "failure examples (first 3 of each id):" in over_tables


def test_a_stream_cut_at_any_byte_of_its_last_second_loads_every_batch_before_it(tmp_path):
    writer = write_run(tmp_path, close=False)
    last_second = Batch("w1")  # a quiet last second: few records, so few bytes to cut at
    for number in (900, 901):
        last_second.add(a_turn(random.Random(number), T0 + 12.5, number), 7)
    writer.write(last_second)
    stream = tmp_path / "turns.00000.arrows"
    data = stream.read_bytes()
    whole = read_stream(stream)
    batches = whole.to_batches()
    assert len(batches) == 13
    before_last = sum(b.num_rows for b in batches[:-1])
    # the bytes before the last second: the same stream with the first eleven batches
    sink = pa.BufferOutputStream()
    again = pa.ipc.new_stream(sink, TURNS.schema)
    for batch in batches[:-1]:
        again.write_batch(batch)
    start = len(sink.getvalue())  # the last second's batch starts here
    assert data[:start] == sink.getvalue().to_pybytes()
    assert len(data) - start > 500  # the last second is a real batch
    for offset in range(start, len(data) + 1):
        table = read_stream(stream, pa.py_buffer(data[:offset]))
        want = len(whole) if offset == len(data) else before_last
        assert table.num_rows == want, offset
        assert table.schema.equals(TURNS.schema)
    assert read_stream(stream, pa.py_buffer(data)).equals(whole)
    for offset in range(0, start, 97):  # and anywhere before it: whole batches only
        rows = read_stream(stream, pa.py_buffer(data[:offset])).num_rows
        assert rows in {sum(b.num_rows for b in batches[:i]) for i in range(13)}


def test_a_folder_cut_anywhere_loads_and_says_the_run_did_not_stop(tmp_path):
    write_run(tmp_path / "run", close=False, stopped=False)
    stream = tmp_path / "run" / "turns.00000.arrows"
    data = stream.read_bytes()
    rng = random.Random(3)
    for offset in sorted(rng.sample(range(len(data) + 1), 3)):
        folder = tmp_path / f"cut-{offset}"
        shutil.copytree(tmp_path / "run", folder)
        (folder / "turns.00000.arrows").write_bytes(data[:offset])
        run = load_run(folder)
        assert run.crash_notice is not None and "did not stop cleanly" in run.crash_notice
        assert len(run.turns) == read_stream(folder / "turns.00000.arrows").num_rows
        assert "WARNING: This run did not stop cleanly" in render(folder)
        assert evaluate_run(folder, config()).crashed is not None


def test_columns_added_at_the_end_of_a_record_become_table_columns():
    from dataclasses import dataclass

    from wsload.run.columns import derive

    @dataclass(slots=True)
    class Streamed(TurnRecord):
        tokens: int | None = None
        token_gap_p50_ms: float | None = None
        extension: str | None = None

    spec = derive("streamed", Streamed, skip=("result.names", "result.failures"))
    types = {c.name: c.type for c in spec.columns}
    assert types["tokens"] == pa.int64() and types["token_gap_p50_ms"] == pa.float32()
    assert types["extension"] == pa.string() and types["started_at"] == pa.float64()
    assert types["first_ms"] == pa.map_(pa.string(), pa.float32())
    assert types["gaps_ms"] == pa.list_(pa.float32())
    assert set(TABLES) == {"turns", "connections", "probes", "sessions", "http", "health"}


def test_compaction_leaves_parquet_only_and_the_same_rows(tmp_path):
    writer = write_run(tmp_path, close=False)
    before = load_samples(tmp_path)
    writer.close()
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != "run.json")
    assert names and all(n.endswith(".parquet") for n in names), names
    after = load_samples(tmp_path)
    assert after.equals(before)
    assert json.loads((tmp_path / "run.json").read_text())["stopped"] is not None


def test_a_classic_csv_drops_a_torn_last_line_and_a_ts_cut_short(tmp_path):
    header = "v,run_id,node,ts,user,kind,name,ms,ok,users\n"
    good = "1,r,n,1800000000.5,1,connect,connect,2.0,1,1\n"
    cut_ts = "1,r,n,1800,1,connect,connect,2.0,1,1\n"  # a ts whose digits were cut off
    torn = "1,r,n,1800000001.5,1,connect,connect,3"  # the write stopped mid-line
    (tmp_path / "samples.csv").write_text(header + good * 3 + cut_ts + torn)
    samples = load_samples(tmp_path)
    assert len(samples) == 3 and set(samples["ms"]) == {2.0}
    assert samples["ts"].min() == 1800000000.5
    config = GateConfig(thresholds=(), security=False, run_checks=False)
    assert evaluate(samples, config).duration_s < 0.01  # the 2 ms measured, not 1.8e9 s


@pytest.mark.parametrize("mixed", [False, True], ids=["turns-only", "mixed-records"])
def test_every_row_keeps_its_records_values_and_the_user_count_it_was_taken_under(mixed):
    rng = random.Random(3)
    batch = Batch("w2")
    expected = []
    for number in range(1, 400):
        users = 5 + number // 90  # a few changes of the user count, as a ramp makes them
        if mixed and number % 50 == 0:
            batch.add(HealthTick(T0 + number, 50.0, 1.0, users), users)
        turn = a_turn(rng, T0 + number, number)
        batch.add(turn, users)
        expected.append((users, turn))
    tables = batches_of("w2", batch.items)
    turns = tables["turns"].to_pydict()
    assert turns["node"] == ["w2"] * len(expected)
    assert turns["node_users"] == [users for users, _ in expected]
    assert turns["turn"] == [turn.turn for _, turn in expected]
    assert turns["failure"] == [
        t.result.failure if t.result.failures else None for _, t in expected
    ]
    assert turns["detail"] == [t.detail if t.result.failures else "" for _, t in expected]
    assert None in turns["failure"] and "" in turns["detail"]  # both kinds of turn are there
    assert ("health" in tables) is mixed
    if mixed:
        ticks = [5 + number // 90 for number in range(50, 400, 50)]
        assert tables["health"].column("node_users").to_pylist() == ticks
