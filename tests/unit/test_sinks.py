"""A process's sink turns its records into columns within ``COLUMNS_INTERVAL_S`` and keeps
only what its listeners take, so thousands of records a second are not left for the
garbage collector to walk; every record still reaches the tables, in order.

Run in a subprocess: importing Locust monkey-patches the whole process with gevent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SINK = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path

    import gevent
    from locust import User
    from locust.env import Environment

    from wsload.locust.recording import COLUMNS_INTERVAL_S, SHIP_INTERVAL_S, LocalSink
    from wsload.protocol.tracker import TurnResult
    from wsload.run.records import SessionEvent, TurnRecord, Who
    from wsload.run.tables import read_table
    from wsload.run.writer import ArrowWriter

    class Chat(User):
        pass

    environment = Environment(user_classes=[Chat])
    environment.create_local_runner()
    who = Who(1, "wsload-w1-000001", "w1-1-1")

    def turn(i):
        failed = i % 3 == 0
        result = TurnResult(
            ok=not failed, failures=[("turn_timeout", "late")] if failed else [],
            ttfe_ms=1.0 + i, e2e_ms=None if failed else 9.0 + i, elapsed_ms=10.0 + i,
            first_ms={"agent_started": 1.0 + i}, gaps_ms=[0.5], spans_ms=[("tool", 2.0)],
            events=3, names=[], run_id=None, terminal=None,
        )
        return TurnRecord(1795459291.0 + i / 100, who, i, 1, 50, result)

    heard = []

    class FailuresOnly:
        failures_only = True

        def __call__(self, records):
            heard.extend(records)

    listeners = {"none": [], "every": [heard.extend], "failures": [FailuresOnly()]}
    with tempfile.TemporaryDirectory() as tmp:
        writer = ArrowWriter(Path(tmp), "t", events=("agent_started",))
        sink = LocalSink("w1", environment, writer, listeners[sys.argv[1]])
        records = [turn(i) for i in range(30)]
        records.insert(7, SessionEvent(1795459291.05, who, "session:reconnect", 3.0))
        before = [sys.getrefcount(r) for r in records]
        for record in records:
            sink.add(record)
        del record  # the loop's own reference
        gevent.sleep(COLUMNS_INTERVAL_S * 3)
        after = [sys.getrefcount(r) for r in records]
        pending = len(sink.batch.items)
        written_early = read_table(Path(tmp), "turns").num_rows
        gevent.sleep(SHIP_INTERVAL_S)
        written = read_table(Path(tmp), "turns").num_rows
        for i in range(30, 35):  # a flush while the clock's delivery is writing
            sink.add(turn(i))
        sink._columns()
        gevent.spawn(sink.deliver)
        gevent.sleep(0)  # it has taken the records and waits for the writer thread
        sink.flush()
        heard_by_flush = len(heard)
        sink.close()
        writer.close()
        print(json.dumps({
            "kept": sum(a > b for a, b in zip(after, before)),
            "pending": pending,
            "written_early": written_early,
            "written_in_a_second": written,
            "turns": read_table(Path(tmp), "turns")["turn"].to_pylist(),
            "sessions": read_table(Path(tmp), "sessions").num_rows,
            "heard": [getattr(r, "turn", "session") for r in heard],
            "heard_by_flush": heard_by_flush,
        }))
    """
)


def sink_run(listeners: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", SINK, listeners], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("listeners", "kept", "heard"),
    [
        ("none", 0, []),
        ("every", 31, [*range(7), "session", *range(7, 30)]),
        ("failures", 10, list(range(0, 30, 3))),
    ],
)
def test_records_become_columns_at_once_and_only_listeners_keep_them(listeners, kept, heard):
    figures = sink_run(listeners)
    assert figures["pending"] == 0  # every record went into columns within the interval
    assert figures["kept"] == kept  # nothing else holds on to a record
    assert figures["written_early"] == 0  # columns wait for the second's write
    assert figures["written_in_a_second"] == 30  # then the whole second is on disk
    assert figures["turns"] == list(range(35))  # every turn once, in the order taken
    assert figures["sessions"] == 1
    assert figures["heard"] == heard + [i for i in range(30, 35) if i in later(listeners)]
    # a flush returns once the delivery under way told the listeners what it took
    assert figures["heard_by_flush"] == len(figures["heard"])


def later(listeners: str) -> set[int]:
    """The turns added while a delivery is under way that the listeners take."""
    return {"none": set(), "every": set(range(30, 35)), "failures": {30, 33}}[listeners]
