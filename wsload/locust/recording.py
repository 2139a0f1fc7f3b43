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

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock
from locust.env import Environment
from locust.runners import Runner, WorkerRunner

from wsload.locust.stats import REQUEST_TYPE, Failure, StatsBatch
from wsload.run.batch import Batch
from wsload.run.recorder import ResultsWriter
from wsload.run.records import Record, TurnRecord

if TYPE_CHECKING:
    import pyarrow as pa

    from wsload.run.columns import TableSpec

RECORDS_MESSAGE = "wsload_records"
SHIP_INTERVAL_S = 1.0  # how often records are written (or shipped to the master)
COLUMNS_INTERVAL_S = 0.05  # how often records become columns (``Sink``)
# The context key of request events wsload fires itself: its request listener skips them.
CONTEXT_KEY = "wsload"

# Called once a second (and at the end of a run) with the records taken since, in the
# order taken; on the event loop, so it must be quick (count, aggregate, never block).
# A listener with a true ``failures_only`` attribute may be given the failed records only.
RecordsListener = Callable[[Sequence[Record]], None]


class Sink:
    """Where a process's records go between being taken and being written or shipped.

    Every ``COLUMNS_INTERVAL_S`` the records taken since become Arrow columns, one record
    batch per table; once a second (``SHIP_INTERVAL_S``) those pieces are joined and
    delivered on one of gevent's native threads. So no record outlives about 50 ms:
    thousands of records a second kept for a whole second would be walked by the garbage
    collector again and again, and promoted to be walked by its full passes too, for
    nothing (reference counting frees them). Only listeners keep records that long: the
    ones they take (every record, or the failed ones when each listener says
    ``failures_only``). The columns are made on the event loop: 50 ms of a saturated
    core's turns take about a millisecond, while handing each piece to a native thread
    cost about as much again.
    """

    def __init__(
        self,
        node: str,
        environment: Environment,
        turns: TableSpec,
        listeners: Sequence[RecordsListener] = (),
    ) -> None:
        self.node = node
        self.turns = turns  # the run's turns table, with its event columns
        self.listeners = listeners
        self.batch = Batch(node)
        self._users = user_counter(environment.runner)
        self._pieces: list[dict[str, pa.RecordBatch]] = []
        self._kept: list[Record] = []  # the records the listeners will take
        self._pool = gevent.get_hub().threadpool
        # one delivery at a time: a flush waits for the one under way (its records and
        # what the listeners are told) before it delivers the rest
        self._delivering = gevent.lock.Semaphore()
        self._stop = gevent.event.Event()
        self._loop = gevent.spawn(self._forever)

    def add(self, record: Record) -> None:
        self.batch.add(record, self._users())

    def add_shipped(self, batches: dict[str, Any]) -> None:
        """Record batches by table taken elsewhere (a worker's, on the master)."""

    def close(self) -> None:
        """Stop the clock (a piece being made is finished, never dropped), then deliver
        what is pending."""
        self._stop.set()
        self._loop.join()
        self.deliver(final=True)

    def deliver(self, final: bool = False) -> None:
        """Write or ship what was taken since the last delivery, now."""
        with self._delivering:
            self._deliver(final)

    def _deliver(self, final: bool) -> None:
        raise NotImplementedError

    def _columns(self) -> None:
        """The records taken since the last call, as Arrow columns."""
        batch = self.batch
        if not batch:
            return
        self.batch = Batch(self.node)
        if self.listeners:
            records = batch.records()
            if self._failures_only():
                self._kept += [r for r in records if r.failure is not None]
            else:
                self._kept += records
        from wsload.run.columns import batches_of  # pyarrow, once records flow

        self._pieces.append(batches_of(self.node, batch.items, self.turns))

    def _taken(self) -> tuple[list[dict[str, pa.RecordBatch]], list[Record]]:
        """(the pieces of columns, the records for the listeners) taken since the last
        call; the pieces are joined off the event loop (``joined``)."""
        self._columns()
        pieces, self._pieces = self._pieces, []
        kept, self._kept = self._kept, []
        return pieces, kept

    def _forever(self) -> None:
        due = time.monotonic() + SHIP_INTERVAL_S
        while not self._stop.wait(COLUMNS_INTERVAL_S):
            if time.monotonic() < due:
                self._columns()
                continue
            due += SHIP_INTERVAL_S
            self.deliver()

    def _failures_only(self) -> bool:
        """Whether every listener takes the failed records only."""
        return all(getattr(each, "failures_only", False) for each in self.listeners)

    def _tell(self, records: Sequence[Record]) -> None:
        for listener in self.listeners:
            listener(records)


class LocalSink(Sink):
    """Writes what came in once a second, on one of gevent's native threads.

    At full load a second of records is tens of thousands of rows. Written on the event
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
        self.writer = writer
        self._arrived: list[dict[str, Any]] = []
        super().__init__(node, environment, writer.specs["turns"], listeners)

    def add_shipped(self, batches: dict[str, Any]) -> None:
        self._arrived.append(batches)

    def flush(self) -> None:
        """Write and hand to the listeners what has come in so far, now."""
        self.deliver()

    def _deliver(self, final: bool) -> None:
        arrived, self._arrived = self._arrived, []
        if arrived:
            from wsload.run.wire import failed_only, records_of  # pyarrow, once records flow
        for shipped in arrived:
            self._pool.apply(self.writer.write_batches, (shipped,))
            if self.listeners:
                self._tell(records_of(failed_only(shipped) if self._failures_only() else shipped))
        pieces, kept = self._taken()
        if pieces:
            self._pool.apply(_write_joined, (self.writer, pieces))
        if kept:
            self._tell(kept)
        self.writer.flush()


class WorkerSink(Sink):
    """Ships what came in to the master once a second and when the test stops."""

    def __init__(
        self,
        node: str,
        environment: Environment,
        listeners: Sequence[RecordsListener] = (),
    ) -> None:
        assert isinstance(environment.runner, WorkerRunner)
        self.runner: WorkerRunner = environment.runner
        from wsload.run.columns import turns_spec  # pyarrow, once records flow

        # the run's turns table: a column per event of the profile (the master's writer
        # folds any it does not know into the first_ms map)
        super().__init__(node, environment, turns_spec(run_events(environment)), listeners)

    def _deliver(self, final: bool) -> None:
        pieces, kept = self._taken()
        if kept:
            self._tell(kept)
        if pieces or final:  # an idle second sends (and encodes) nothing
            message = self._pool.apply(_encode_joined, (self.node, pieces))
            message["final"] = final
            self.runner.send_message(RECORDS_MESSAGE, message)


def _write_joined(writer: ResultsWriter, pieces: list[dict[str, pa.RecordBatch]]) -> None:
    from wsload.run.columns import joined

    writer.write_batches(joined(pieces))


def _encode_joined(node: str, pieces: list[dict[str, pa.RecordBatch]]) -> dict[str, Any]:
    from wsload.run.columns import joined
    from wsload.run.wire import encode_tables

    return encode_tables(node, joined(pieces))


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
