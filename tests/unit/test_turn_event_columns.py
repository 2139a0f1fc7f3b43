"""The turns table's event columns: one float32 column per event of the run's profile
(``first_ms.<event>``), the ``first_ms`` map keeping only the others. The long view, the
summary and the gate read the same whichever layout a folder has, older folders (every
offset in the map) included, and a master writes what its workers ship whichever events
each side knows."""

from __future__ import annotations

import random
import shutil

import msgpack
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wsload.config.profile import load_profile
from wsload.gate.config import GateConfig
from wsload.gate.evaluate import evaluate_run
from wsload.gate.thresholds import parse_threshold
from wsload.protocol.tracker import TurnResult
from wsload.run.batch import Batch
from wsload.run.columns import EVENT_PREFIX, TURNS, turn_events, turns_spec
from wsload.run.long_view import load_long
from wsload.run.recorder import write_run_json
from wsload.run.records import HealthTick, TurnRecord, Who
from wsload.run.summary import render
from wsload.run.tables import read_table
from wsload.run.wire import decode, encode, records_of
from wsload.run.writer import ArrowWriter

T0 = 1_800_000_000.0
PROFILE_EVENTS = ("agent_started", "agent_thinking", "tool_executing", "agent_completed")
UNKNOWN = "progress_update"  # an event the profile neither names nor ignores


def a_turn(rng: random.Random, at: float, number: int) -> TurnRecord:
    """A turn whose first occurrences come in a random order, sometimes with an event the
    profile does not name; offsets all distinct."""
    names = list(PROFILE_EVENTS[:-1]) + ([UNKNOWN] if number % 3 == 0 else [])
    rng.shuffle(names)
    names = names[: rng.randint(1, len(names))] + ["agent_completed"]
    offsets = sorted(rng.sample(range(1_000, 400_000), len(names)))
    first = {name: offset / 1000 + 0.0625 for name, offset in zip(names, offsets, strict=True)}
    failed = rng.random() < 0.1
    result = TurnResult(
        ok=not failed,
        failures=[("turn_timeout", "no end")] if failed else [],
        ttfe_ms=min(first.values()),
        e2e_ms=None if failed else max(first.values()),
        elapsed_ms=max(first.values()),
        first_ms=first,
        gaps_ms=[rng.uniform(0, 50) for _ in range(len(first) - 1)],
        spans_ms=[("tool", rng.uniform(1, 30))] if "tool_executing" in first else [],
        events=len(first),
        names=[],
        run_id=None,
        terminal="agent_completed",
    )
    who = Who(number % 5, f"wsload-{number % 5}", f"n-{number % 5}-1")
    return TurnRecord(at, who, number, 2, 80, result)


def seconds(count: int = 8, seed: int = 3) -> list[Batch]:
    rng = random.Random(seed)
    out, number = [], 0
    for second in range(count):
        batch = Batch("w1")
        for _ in range(rng.randint(20, 40)):
            number += 1
            batch.add(a_turn(rng, T0 + second + rng.random(), number), 5)
        batch.add(HealthTick(T0 + second, 50.0, 1.0, 5), 5)
        out.append(batch)
    return out


def written(folder, events=(), shipped=None):
    folder.mkdir(parents=True)
    write_run_json(folder, {"run_id": "r", "started": T0, "stopped": T0 + 9})
    writer = ArrowWriter(folder, "r", events=events)
    for batch in seconds():
        writer.write(batch) if shipped is None else writer.write_batches(shipped(batch))
    writer.close()
    return folder


def gate() -> GateConfig:
    thresholds = tuple(
        parse_threshold(t)
        for t in ("turn:agent_thinking p95 < 300ms", f"turn:{UNKNOWN} p50 < 1s", "goodput > 50%")
    )
    limits = {"turn:agent_thinking": 250.0, f"turn:{UNKNOWN}": 200.0, "turn:e2e": 390.0}
    return GateConfig(
        thresholds=thresholds, security=False, goodput_limits_ms=limits, run_checks=False
    )


def test_a_run_writes_a_float32_column_per_profile_event_and_only_the_others_in_the_map(
    tmp_path,
):
    folder = written(tmp_path / "run", PROFILE_EVENTS)
    table = read_table(folder, "turns")
    for event in PROFILE_EVENTS:
        assert table.schema.field(EVENT_PREFIX + event).type == pa.float32()
    assert table.schema.field("first_ms").type == pa.map_(pa.string(), pa.float32())
    records = [r for b in seconds() for r in b.records() if type(r) is TurnRecord]
    rows = table.to_pylist()
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        first = record.result.first_ms
        for event in PROFILE_EVENTS:
            want = first.get(event)
            got = row[EVENT_PREFIX + event]
            assert got == (None if want is None else pytest_float32(want))
        others = {k: pytest_float32(v) for k, v in first.items() if k not in PROFILE_EVENTS}
        assert (dict(row["first_ms"]) if row["first_ms"] else {}) == others
        assert (row["first_ms"] is None) == (not others)


def pytest_float32(value: float) -> float:
    return float(pa.scalar(value, pa.float32()).as_py())


def test_the_long_view_summary_and_gate_read_the_same_over_either_layout(tmp_path):
    columns = written(tmp_path / "columns", PROFILE_EVENTS)
    mapped = written(tmp_path / "map")  # every offset in the map, as older folders have it
    assert pq.read_schema(next(mapped.glob("turns.*.parquet"))).names == TURNS.schema.names
    long_columns, long_map = load_long(columns), load_long(mapped)
    pd.testing.assert_frame_equal(long_columns, long_map)
    counts = long_columns["name"].value_counts()
    records = [r for b in seconds() for r in b.records() if type(r) is TurnRecord]
    for event in (*PROFILE_EVENTS, UNKNOWN):
        assert counts[f"turn:{event}"] == sum(event in r.result.first_ms for r in records)
    # a turn's event rows come in the order the events came in
    events = long_columns.loc[long_columns["kind"] == "event"]
    for record in records[:30]:
        rows = events.loc[events["turn"] == record.turn, "name"].tolist()
        assert rows == ["turn:ttfe", *(f"turn:{e}" for e in record.result.first_ms)]
    assert render(columns).replace(str(columns), "RUN") == render(mapped).replace(
        str(mapped), "RUN"
    )
    by_columns, by_map = evaluate_run(columns, gate()), evaluate_run(mapped, gate())
    assert by_columns.rows == by_map.rows and by_columns.samples == by_map.samples
    assert all(row.observed is not None for row in by_columns.rows)


def test_a_folder_with_parts_of_both_layouts_loads_every_turn(tmp_path):
    columns = written(tmp_path / "columns", PROFILE_EVENTS)
    mapped = written(tmp_path / "map")
    both = tmp_path / "both"
    shutil.copytree(mapped, both)
    shutil.copy(next(columns.glob("turns.*.parquet")), both / "turns.00001.parquet")
    # and a stream part of the column layout, left by a run that did not stop
    writer = ArrowWriter(both, "r", events=PROFILE_EVENTS)
    writer._parts["turns"] = 2
    for batch in seconds()[:2]:
        writer.write(batch)
    counts = load_long(both)["name"].value_counts()
    once = load_long(mapped)["name"].value_counts()
    early = [r for b in seconds()[:2] for r in b.records() if type(r) is TurnRecord]
    assert early
    for event in (*PROFILE_EVENTS, UNKNOWN):
        streamed = sum(event in r.result.first_ms for r in early)
        assert counts[f"turn:{event}"] == 2 * once[f"turn:{event}"] + streamed
    assert counts["turn:e2e"] == 2 * once["turn:e2e"] + len(early)
    assert "turn:agent_thinking" in render(both)


def test_a_master_writes_what_workers_of_other_profiles_ship_losing_no_offset(tmp_path):
    worker = turns_spec((*PROFILE_EVENTS, UNKNOWN))  # a worker that knows one more event

    def shipped(batch):  # through the wire as Locust carries it
        return decode(msgpack.unpackb(msgpack.packb(encode(batch, worker))))

    master = written(tmp_path / "master", PROFILE_EVENTS[:2], shipped)
    local = written(tmp_path / "local", PROFILE_EVENTS)
    names = read_table(master, "turns").schema.names
    assert [n for n in names if n.startswith(EVENT_PREFIX)] == [
        EVENT_PREFIX + e for e in PROFILE_EVENTS[:2]
    ]
    pd.testing.assert_frame_equal(load_long(master), load_long(local))
    # and one that knows fewer: the master's extra columns are empty, nothing is lost
    fewer = written(tmp_path / "fewer", PROFILE_EVENTS, lambda b: decode(encode(b)))
    pd.testing.assert_frame_equal(load_long(fewer), load_long(local))


def test_the_masters_listeners_get_each_turns_offsets_in_the_order_they_came():
    batch = seconds(count=1)[0]
    back = records_of(decode(encode(batch, turns_spec(PROFILE_EVENTS))))
    turns = sorted((r for r in back if type(r) is TurnRecord), key=lambda r: r.turn)
    mine = [r for r in batch.records() if type(r) is TurnRecord]
    assert len(turns) == len(mine)
    for theirs, ours in zip(turns, mine, strict=True):
        want = {k: pytest_float32(v) for k, v in ours.result.first_ms.items()}
        assert list(theirs.result.first_ms.items()) == list(want.items())


def test_the_default_profile_gives_its_grammar_terminal_error_and_span_events_a_column():
    events = turn_events(load_profile())
    for event in ("agent_started", "agent_thinking", "tool_executing", "tool_completed"):
        assert event in events
    assert "agent_completed" in events and "agent_error" in events
    assert "heartbeat" not in events and "pong" not in events
    spec = turns_spec(events)
    assert spec is turns_spec(events) and turns_spec(()) is TURNS
    assert len(set(spec.schema.names)) == len(spec.schema.names)
