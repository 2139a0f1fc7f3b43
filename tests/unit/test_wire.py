"""A worker's records shipped to the master come out as the same records: the master
writes the very rows the worker would have written itself."""

from __future__ import annotations

import msgpack

from wsload.net.probes import ProbeResult
from wsload.protocol.tracker import TurnResult
from wsload.run.batch import Batch
from wsload.run.recorder import CsvWriter
from wsload.run.records import (
    ConnectionAttempt,
    HealthTick,
    HttpRequest,
    ProbeRecord,
    SessionEvent,
    TurnRecord,
    Who,
)
from wsload.run.wire import Decoder, Encoder

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


def written(folder, batch: Batch) -> str:
    writer = CsvWriter(folder, "run")
    writer.write(batch)
    writer.close()
    return (folder / "samples.csv").read_text()


def test_shipped_records_are_written_as_the_worker_would_write_them(tmp_path):
    encoder, decoder = Encoder(), Decoder()
    local = batch_of(records())
    shipped = []
    for _ in range(2):  # the second message reuses the shapes the first announced
        message = msgpack.unpackb(msgpack.packb(encoder.encode(batch_of(records()))))
        shipped.append(message)
        got = decoder.decode("worker-1", message)
        assert got.node == "w1"
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "b").mkdir(exist_ok=True)
        assert written(tmp_path / "a", got) == written(tmp_path / "b", local)
        for mine, theirs in zip(got.records(), local.records(), strict=True):
            assert list(mine.samples()) == list(theirs.samples())
            assert mine.failure == theirs.failure
        for path in (tmp_path / "a" / "samples.csv", tmp_path / "b" / "samples.csv"):
            path.unlink()
    assert len(shipped[0]["shapes"]) == 3 and shipped[1]["shapes"] == []
    names = msgpack.packb(shipped[1]["items"])
    assert b"agent_started" not in names and b"turn:gap" not in names  # names travel once


def test_two_workers_shapes_never_mix():
    first, second, decoder = Encoder(), Encoder(), Decoder()
    a = turn({"agent_started": 5.0})
    b = turn({"run.start": 1.0, "run.end": 2.0})
    decoder.decode("A", first.encode(batch_of([a], (1,))))
    decoder.decode("B", second.encode(batch_of([b], (1,))))
    (again,) = decoder.decode("A", first.encode(batch_of([a], (1,)))).records()
    assert list(again.samples()) == list(a.samples())
