"""A worker's records shipped to the master as Arrow columns: the master writes the very
rows the worker would have written itself, and its listeners get the same records."""

from __future__ import annotations

import msgpack
import pandas as pd

from wsload.net.probes import ProbeResult
from wsload.protocol.tracker import TurnResult
from wsload.run.batch import Batch
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
from wsload.run.wire import decode, encode, failed_only, records_of
from wsload.run.writer import ArrowWriter

WHO = Who(4, "wsload-w1-000004", "w1-4-2")


def turn(first: dict[str, float], failure: str | None = None, intended: float | None = None):
    result = TurnResult(
        ok=failure is None,
        failures=[(failure, "other user's event")] if failure else [],
        ttfe_ms=11.0,
        e2e_ms=None if failure else 99.5,
        elapsed_ms=120.25,
        first_ms=first,
        gaps_ms=[1.5, 2.5],
        spans_ms=[("tool", 3.75)],
        events=6,
        names=["x"],
        run_id="r1",
        terminal="agent_completed",
    )
    return TurnRecord(1795459291.25, WHO, 9, 2, 77, result, intended)


def records():
    probe = ProbeResult("expired", False, "accepted", "auth_not_enforced", 2.0, "101", 101)
    return [
        turn({"agent_started": 5.0, "agent_completed": 99.5}),
        turn({"agent_started": 6.0, "agent_completed": 98.0}, intended=130.0),
        turn({"agent_started": 7.0}, failure="foreign_event"),
        ConnectionAttempt(1.5, WHO, 3, 2.0, 1.0, "auth_rejected", "auth", "bad", None, 1008),
        ProbeRecord(2.5, WHO, "probe:expired", "probe", probe),
        SessionEvent(3.5, WHO, "session:duplicate", 0.0, "sequence_duplicate", "again", None),
        HttpRequest(4.5, WHO, "http:login", 12.0, None, "", 200, 321),
        HealthTick(5.5, 40.0, 2.0, None),
        HealthTick(6.5, 30.0, 1.0, 7, 51200.0, 700, 90000.5, 690),
    ]


def batch_of(items, users=(3, 3, 4, 4, 4, 5, 5, 5, 6)) -> Batch:
    batch = Batch("w1")
    for record, count in zip(items, users, strict=True):
        batch.add(record, count)
    return batch


def written(folder, *, batch: Batch | None = None, shipped=None) -> pd.DataFrame:
    folder.mkdir()
    writer = ArrowWriter(folder, "run")
    if batch is not None:
        writer.write(batch)
    else:
        writer.write_batches(shipped)
    writer.close()
    return load_samples(folder)


def test_shipped_records_are_written_as_the_worker_would_write_them(tmp_path):
    local = batch_of(records())
    message = msgpack.unpackb(msgpack.packb(encode(batch_of(records()))))
    assert message["node"] == "w1" and set(message["tables"]) == {
        "turns", "connections", "probes", "sessions", "http", "health"
    }  # fmt: skip
    got = written(tmp_path / "a", shipped=decode(message))
    want = written(tmp_path / "b", batch=local)
    order = ["ts", "name", "ms", "users"]  # three turns share a start and a number
    pd.testing.assert_frame_equal(
        got.sort_values(order, ignore_index=True), want.sort_values(order, ignore_index=True)
    )
    every_sample = sorted(s.name for r in records() for s in r.samples())
    assert sorted(got["name"]) == every_sample and (got["name"] == "turn:gap").sum() == 6


def test_the_master_hands_its_listeners_the_records_the_worker_took():
    local = list(batch_of(records()).records())
    back = records_of(decode(encode(batch_of(records()))))
    key = lambda r: (type(r).__name__, getattr(r, "started_at", 0.0))  # noqa: E731
    assert len(back) == len(local)
    for mine, theirs in zip(sorted(back, key=key), sorted(local, key=key), strict=True):
        assert type(mine) is type(theirs)
        assert list(mine.samples()) == list(theirs.samples())
        assert mine.failure == theirs.failure


def test_a_failures_only_listener_gets_back_exactly_the_failed_records():
    shipped = decode(encode(batch_of(records())))
    failed = records_of(failed_only(shipped))
    want = [r for r in records() if r.failure is not None]
    assert sorted((type(r).__name__, r.failure) for r in failed) == sorted(
        (type(r).__name__, r.failure) for r in want
    )
    assert len(want) == 4 and set(failed_only(shipped)) == {"turns", "connections", "probes",
                                                             "sessions"}  # fmt: skip
    assert failed_only(decode(encode(batch_of(records()[:2], (1, 1))))) == {}


def test_a_worker_batch_is_compact_on_the_wire():
    many = Batch("w1")
    for i in range(1000):
        many.add(turn({"agent_started": 5.0 + i, "agent_completed": 99.5}), 10)
    size = len(msgpack.packb(encode(many)))
    assert size < 120 * 1000, size  # about a dozen numbers a turn, no names per sample
