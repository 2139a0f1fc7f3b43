"""The one component that records: every record in, Locust's stats and the results out.

``Recording.record`` is the seam every measurement of wsload's users leaves through
(``Runtime.record`` is this method). A record goes into Locust's stats in batches
(``wsload.locust.stats``) and to the results sink of the run: on a standalone process or
a master, the tables writer on a native thread; on a worker, a shipper that sends the
master a second of records as Arrow columns (``wsload.run.wire``). Once a second the
records a process took are handed to its listeners (``RecordsListener``: the web UI
tabs, the abort watch, metrics exporters); a master's listeners also get its workers'
records, turned back from their columns only when the master has a listener.

Requests of Locust's own HTTP clients (logins, refreshes, tickets) are already in Locust's
stats; they come in through ``observe`` and only reach the results and listeners.

With ``--request-events``, wsload's samples are fired as Locust request events instead of
being logged into the stats directly, so plugins and ``--otel`` that listen to Locust's
request event see them too (Locust's own listener then counts them); it costs speed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gevent
import gevent.event
from locust.env import Environment
from locust.runners import Runner, WorkerRunner

from wsload.locust.stats import REQUEST_TYPE, Failure, StatsBatch
from wsload.run.batch import Batch
from wsload.run.recorder import ResultsWriter
from wsload.run.records import Record, TurnRecord

RECORDS_MESSAGE = "wsload_records"
SHIP_INTERVAL_S = 1.0
# The context key of request events wsload fires itself: its request listener skips them.
CONTEXT_KEY = "wsload"

# Called once a second (and at the end of a run) with the records taken since, in the
# order taken; on the event loop, so it must be quick (count, aggregate, never block).
# A listener with a true ``failures_only`` attribute may be given the failed records only.
RecordsListener = Callable[[Sequence[Record]], None]


class Sink:
    """Where a process's records go between being taken and being written or shipped."""

    def __init__(self, node: str, environment: Environment) -> None:
        self.batch = Batch(node)
        self._users = user_counter(environment.runner)

    def add(self, record: Record) -> None:
        self.batch.add(record, self._users())

    def add_shipped(self, batches: dict[str, Any]) -> None:
        """Record batches by table taken elsewhere (a worker's, on the master)."""

    def close(self) -> None:
        """Deliver what is pending."""


class LocalSink(Sink):
    """Writes what came in once a second, formatting it on one of gevent's native threads.

    At full load a second of records is tens of thousands of lines. Written on the event
    loop in one go they would stall every user for tens of milliseconds; on a native thread
    the writer gets its share of the interpreter in 5 ms turns and the users keep running.
    It is stopped by an event and waited for, never killed, so no record is lost.
    """

    def __init__(
        self,
        node: str,
        environment: Environment,
        writer: ResultsWriter,
        listeners: Sequence[RecordsListener],
    ) -> None:
        super().__init__(node, environment)
        self.node = node
        self.writer = writer
        self.listeners = listeners
        self._arrived: list[dict[str, Any]] = []
        self._stop = gevent.event.Event()
        self._pool = gevent.get_hub().threadpool
        self._loop = gevent.spawn(self._write_forever)

    def add_shipped(self, batches: dict[str, Any]) -> None:
        self._arrived.append(batches)

    def flush(self) -> None:
        """Write and hand to the listeners what has come in so far, now."""
        self._write()

    def _write(self) -> None:
        arrived, self._arrived = self._arrived, []
        if arrived:
            from wsload.run.wire import failed_only, records_of  # pyarrow, once records flow
        every_row = not all(getattr(each, "failures_only", False) for each in self.listeners)
        for shipped in arrived:
            self._pool.apply(self.writer.write_batches, (shipped,))
            if self.listeners:
                self._tell(records_of(shipped if every_row else failed_only(shipped)))
        if self.batch:
            batch, self.batch = self.batch, Batch(self.node)
            self._pool.apply(self.writer.write, (batch,))
            if self.listeners:
                self._tell(list(batch.records()))
        self.writer.flush()

    def _tell(self, records: Sequence[Record]) -> None:
        for listener in self.listeners:
            listener(records)

    def _write_forever(self) -> None:
        while not self._stop.wait(SHIP_INTERVAL_S):
            self._write()

    def close(self) -> None:
        self._stop.set()
        self._loop.join()
        self._write()


class WorkerSink(Sink):
    """Ships what came in to the master once a second and when the test stops."""

    def __init__(
        self,
        node: str,
        environment: Environment,
        listeners: Sequence[RecordsListener] = (),
    ) -> None:
        super().__init__(node, environment)
        self.node = node
        assert isinstance(environment.runner, WorkerRunner)
        self.runner: WorkerRunner = environment.runner
        self.listeners = listeners
        from wsload.run.columns import turns_spec  # pyarrow, once records flow

        # the run's turns table: a column per event of the profile (the master's writer
        # folds any it does not know into the first_ms map)
        self.turns = turns_spec(run_events(environment))
        self._pool = gevent.get_hub().threadpool
        self._stop = gevent.event.Event()
        self._loop = gevent.spawn(self._ship_forever)

    def _ship(self, final: bool = False) -> None:
        batch = self.batch
        self.batch = Batch(self.node)
        from wsload.run.wire import encode  # pyarrow, once records flow

        message = self._pool.apply(encode, (batch, self.turns))
        for listener in self.listeners if batch else ():
            listener(list(batch.records()))
        if batch or final:
            message["final"] = final
            self.runner.send_message(RECORDS_MESSAGE, message)

    def _ship_forever(self) -> None:
        while not self._stop.wait(SHIP_INTERVAL_S):
            self._ship()

    def close(self) -> None:
        """Stop shipping once a second (a batch being encoded is shipped, never dropped),
        then ship the rest as the final message."""
        self._stop.set()
        self._loop.join()
        self._ship(final=True)


def user_counter(runner: Runner | None) -> Callable[[], int]:
    """What reads the users a process runs, for every record it takes: a local runner's
    or a worker's ``user_count`` is the size of its set of user greenlets, read in C."""
    if runner is None:
        return int  # int() == 0
    if type(runner).user_count is Runner.user_count:
        return runner.user_greenlets.greenlets.__len__
    return lambda: runner.user_count


def run_events(environment: Environment) -> tuple[str, ...]:
    """The events of this run's profile that get a column of their own in the turns table
    (none when the profile cannot be read here: every offset then goes in the map)."""
    from wsload.errors import ConfigError
    from wsload.locust.runtime import runtime_for  # the runtime imports this module
    from wsload.run.columns import turn_events

    try:
        return turn_events(runtime_for(environment).profile)
    except ConfigError:  # the users will say what is wrong; the records must still flow
        return ()


class Recording:
    """The process's recorder: one per Locust process, across runs."""

    def __init__(self, environment: Environment, *, request_events: bool = False) -> None:
        self.environment = environment
        self.stats = StatsBatch(environment.stats)
        self.sink: Sink | None = None  # set while a run records
        self.request_events = request_events
        self._fire = environment.events.request.fire
        self._flusher = gevent.spawn(self.stats.flush_forever)
        # Every record of this process, to the live metrics when they are on (wsload.metrics)
        self.tap: Callable[[Record], None] | None = None

    def record(self, record: Record) -> None:
        """Into Locust's stats (batched) and to the run's results."""
        if self.request_events:
            self._fire_samples(record)
        else:
            self.stats.add(record)
        sink = self.sink
        if sink is not None:
            sink.add(record)
        tap = self.tap
        if tap is not None:
            tap(record)

    def observe(self, record: Record) -> None:
        """To the run's results only: a record already in Locust's stats (or never meant
        for them, like a health tick)."""
        sink = self.sink
        if sink is not None:
            sink.add(record)
        tap = self.tap
        if tap is not None:
            tap(record)

    def flush(self) -> None:
        """Pending samples into Locust's stats now."""
        self.stats.flush()

    def close(self) -> None:
        self._flusher.kill(block=False)
        self.stats.flush()

    def _fire_samples(self, record: Record) -> None:
        """Each sample as a Locust request event (``--request-events``)."""
        self.stats.flush()  # earlier batched samples first, as Locust counts
        context = {CONTEXT_KEY: record}
        sent = record.sent_bytes if type(record) is TurnRecord else 0
        for sample in record.samples():
            failure = sample.failure
            self._fire(
                request_type=REQUEST_TYPE,
                name=sample.name,
                response_time=sample.ms,
                response_length=sent if sample.kind == "turn" else 0,
                exception=None if failure is None else Failure(failure, sample.detail),
                context=context,
                start_time=record.started_at,
                url=None,
                response=None,
            )


def request_is_wsloads(context: dict[str, Any] | None) -> bool:
    """Whether a request event is one wsload fired for its own samples."""
    return bool(context) and CONTEXT_KEY in context  # type: ignore[operator]
