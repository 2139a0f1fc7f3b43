"""``ConnectionUser``: open authenticated sessions and hold them, with heartbeats.

The connection-capacity run (``locustfiles/connections.py``) ramps these to N sessions and
holds them. Each user holds ``--sessions-per-user`` sessions (each with its own subject and
token, as separate browser tabs would) on its one greenlet, which waits on all of their
sockets at once, pings each on time and runs an optional trickle of chat turns. A parked
greenlet costs about as much memory as a session itself, so sharing one between several
sessions is what keeps a held session near the cost of its socket and session state.
A session that drops is recorded (``session:disconnect``) and opened again with backoff.

Each held socket has one readiness watcher of its own for as long as it is held (a
``select.poll`` under gevent would start and stop a watcher per socket on every wake).
Heartbeats go out per user: all its sessions ping together, on the user's own phase, so one
wake-up of its greenlet sends them all and their pongs mostly come back to one wake-up too
(per session, a wake-up cost as much as the ping). The phase is random per user, a ping sent
late does not move the next one to the same moment as every other late ping, and each
interval is jittered a little, so users started together, or delayed together by a stall,
spread out instead of bunching. Wake-ups fall on a process-wide grid of ``WAKE_GRID_S``:
users due within one step wake in the same turn of the event loop, and the pings of that
step leave back to back, so the server reads them in one go instead of being woken for each.
Reads are batched the same way (``--io-batch``, ``wsload.net.io_batch``): the process lets
arrivals gather for a few milliseconds per wake, their times being the kernel's.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import gevent
import gevent.event
from locust import User, task

from wsload import taxonomy
from wsload.heap import PeakFreezer
from wsload.locust.chat_connection import _FAILURES, PONG_TIMEOUT
from wsload.locust.runtime import Runtime, runtime_for
from wsload.net.client import ConnectError, Connection, attempt_record, connect
from wsload.net.io_batch import batch_io
from wsload.net.ping_schedule import next_ping_at
from wsload.protocol.carrier import place
from wsload.protocol.events import Closed, Event, Pong, TurnEnded
from wsload.protocol.tracker import TurnTracker
from wsload.run.records import SessionEvent, TurnRecord, Who

_perf = time.perf_counter
_FAR = float("inf")
MIN_WAIT_S = 0.001  # a socket timeout of 0 would make a read non-blocking
CLOSE_TIMEOUT_S = 0.5
_READ = 1  # libev's EV_READ
WAKE_GRID_S = 0.02  # pings and deadlines are late by less than this, never early


class Held:
    """One held session: its connection, who it is, and when it next has something to do."""

    __slots__ = ("conn", "next_turn", "pong_due", "tracker", "turn", "watcher", "who")

    def __init__(self, conn: Connection, who: Who, now: float, trickle: float):
        self.conn = conn
        self.who = who
        # spread the first turn over a period, so sessions opened together do not send
        # together for the whole hold
        self.next_turn = now + trickle * random.random() if trickle > 0 else _FAR
        self.pong_due = _FAR
        self.tracker: TurnTracker | None = None
        self.turn = (0.0, 0, 0, 0)  # wall clock, turn number, inflight, bytes
        self.watcher: Any = None  # the hub's readiness watcher of its socket

    def wake(self) -> float:
        """When this session next needs its user (its pings are the user's)."""
        turn = self.tracker.deadline() if self.tracker is not None else self.next_turn
        return self.pong_due if self.pong_due < turn else turn


class ConnectionUser(User):
    """Holds ``--sessions-per-user`` sessions: connect, ack, heartbeats (and a trickle of
    turns) until the run stops; a dropped session is opened again."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.rt: Runtime | None = None
        self.held: dict[int, Held] = {}  # by file descriptor
        self.ready: list[int] = []  # descriptors whose watcher fired, not read yet
        self.wakeup = gevent.event.Event()  # set by a watcher: something to read
        self.wanted = 1
        self.next_ping = _FAR  # when every held session of this user pings next
        self.opener: gevent.Greenlet | None = None  # opening missing sessions, if any
        self.failed_attempts = 0
        self.reopen_at = 0.0
        self.last_who: Who | None = None

    def wait_time(self) -> float:
        return 0.0

    def on_start(self) -> None:
        self.rt = runtime_for(self.environment)
        _batch_reads(self.rt)
        self.wanted = self.rt.options.sessions_per_user
        interval = self.rt.options.heartbeat_interval_s
        if interval > 0:  # a random phase: users started together do not ping together
            self.next_ping = _perf() + interval * random.random()

    def on_stop(self) -> None:
        opener = self.opener
        if opener is not None:  # a handshake under way: its outcome is the run's
            opener.join(timeout=CLOSE_TIMEOUT_S)
            opener.kill()
        held, self.held = self.held, {}
        self.rt.open_sessions -= len(held)
        for session in held.values():
            _unwatch(session)
        for session in held.values():
            if session.tracker is not None:  # cut short by the stop: not a turn's verdict
                session.tracker = None
                session.conn.session.end_turn()
                self.rt.inflight_turns -= 1
            session.conn.close(timeout=CLOSE_TIMEOUT_S)

    @task
    def hold(self) -> None:
        """Keep the sessions open and serve them until the run stops."""
        wakeup = self.wakeup
        while True:
            opening = self.opener is None and len(self.held) < self.wanted
            if opening and _perf() >= self.reopen_at:
                self.opener = gevent.spawn(self._open_missing)
                opening = False
            if self.ready:
                self._serve_ready()
            wake = self._due(_perf())
            if opening and self.reopen_at < wake:
                wake = self.reopen_at
            if self.ready:
                continue
            wakeup.clear()  # before the wait: a watcher firing from here on wakes it
            if wake != _FAR:
                wake = math.ceil(wake / WAKE_GRID_S) * WAKE_GRID_S
            wait = None if wake == _FAR else max(MIN_WAIT_S, wake - _perf())
            wakeup.wait(wait if wait is not None or self.held else 1.0)

    def _readable(self, fd: int) -> None:
        """A held socket has something to read (the hub calls this)."""
        session = self.held.get(fd)
        if session is not None and session.watcher is not None:
            session.watcher.stop()  # until it is read: one wake-up per arrival
        self.ready.append(fd)
        self.wakeup.set()

    def _serve_ready(self) -> None:
        ready, self.ready = self.ready, []
        for fd in ready:
            session = self.held.get(fd)
            if session is None:
                continue
            self._read(session)
            if self.held.get(fd) is session and session.watcher is not None:
                session.watcher.start(self._readable, fd)

    # sessions --------------------------------------------------------------------------
    def _open_missing(self) -> None:
        """Open the sessions missing, on a greenlet of its own: while a handshake waits (for
        a slot, for a slow server), the user keeps pinging and reading the sessions it
        holds. A failed attempt ends it; the user starts another after the backoff."""
        try:
            while len(self.held) < self.wanted and _perf() >= self.reopen_at:
                self._open()
                if self.rt.options.trickle_interval_s > 0:
                    self.wakeup.set()  # the user schedules the new session's first turn
        finally:
            self.opener = None
            self.wakeup.set()

    def _open(self) -> None:
        """Open one session (its own subject and token); on failure, back off."""
        rt = self.rt
        index, subject = rt.new_user()
        who = Who(index, subject, f"{rt.node}-{index}-1")
        placement = place(rt.profile.auth, rt.url, rt.minter.mint(subject),
                          carrier=rt.options.carrier)  # fmt: skip
        slots = handshake_slots(rt.options.max_handshakes)
        if slots is not None:
            slots.acquire()  # waiting here is not part of the attempt: nothing is sent yet
        rt.inflight_handshakes += 1
        inflight = rt.inflight_handshakes
        try:
            outcome: Connection | ConnectError = connect(
                rt.url, rt.profile, placement, expected_subject=subject, options=rt.client_options
            )
        except ConnectError as err:
            outcome = err
        finally:
            rt.inflight_handshakes -= 1
            if slots is not None:
                slots.release()
        record, conn = attempt_record(outcome, who, inflight)
        rt.record(record)
        if conn is None:
            self.failed_attempts += 1
            delay = rt.options.backoff.delay(self.failed_attempts - 1, random)
            self.reopen_at = _perf() + delay
            return
        self.failed_attempts = 0
        conn.session.thread_id = f"{rt.node}-{index}"
        options = rt.options
        held = Held(conn, who, _perf(), options.trickle_interval_s)
        fd = conn.sock.fileno()
        self.held[fd] = held
        held.watcher = gevent.get_hub().loop.io(fd, _READ)
        held.watcher.start(self._readable, fd)
        rt.open_sessions += 1
        _FREEZER.held(rt.open_sessions)
        if conn.pending:
            self._handle(held, conn.receive(MIN_WAIT_S) or [])

    def _read(self, session: Held) -> None:
        events = session.conn.receive(MIN_WAIT_S)
        if events:
            self._handle(session, events)

    def _handle(self, session: Held, events: list[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is Pong:
                self._record(session.who, "ping", event.ms)  # type: ignore[union-attr]
                session.pong_due = _FAR
            elif kind is TurnEnded:
                self._end_turn(session)
            elif kind is Closed:
                self._closed(session, event)  # type: ignore[arg-type]
                return
            elif kind in _FAILURES:
                name, failure, size = _FAILURES[kind]
                self._record(session.who, name, 0.0, failure, event.detail[:size])  # type: ignore[union-attr]

    def _due(self, now: float) -> float:
        """Pings, pong timeouts, turn deadlines and trickled turns that are due; when the
        next one will be."""
        options = self.rt.options
        ping_all = now >= self.next_ping  # every session's heartbeat, in one go
        if ping_all:
            self.next_ping = next_ping_at(self.next_ping, now, options.heartbeat_interval_s, _RNG)
        wake = self.next_ping
        for session in list(self.held.values()):
            due = session.wake()
            if due > now and not ping_all:  # nothing to do yet
                if due < wake:
                    wake = due
                continue
            conn = session.conn
            if now >= session.pong_due:
                timeout = options.pong_timeout_s
                self._record(session.who, "ping", timeout * 1000.0, PONG_TIMEOUT,
                             f"no pong in {timeout:g} s: connection half-open")  # fmt: skip
                conn.session.cancel_ping()
                conn.abort("no pong")
                self._handle(session, conn.receive(MIN_WAIT_S) or [])  # its Closed
                continue
            tracker = session.tracker
            if tracker is not None and now >= tracker.deadline():
                tracker.expire(now)
                self._end_turn(session)
            if ping_all and session.pong_due == _FAR:
                try:
                    conn.ping()
                except OSError:
                    continue  # the next read reports the drop
                session.pong_due = now + options.pong_timeout_s
            if session.tracker is None and now >= session.next_turn:
                session.next_turn = now + options.trickle_interval_s
                self._begin_turn(session)
            if session.conn is conn and self.held.get(conn.sock.fileno()) is session:
                due = session.wake()
                if due < wake:
                    wake = due
        return wake

    def _closed(self, session: Held, event: Closed) -> None:
        if session.tracker is not None:
            if not session.tracker.done:
                session.tracker.disconnected(event.code, event.at)
            self._end_turn(session)
        fd = next((fd for fd, held in self.held.items() if held is session), None)
        if fd is None:
            return  # closed by on_stop: no disconnect
        del self.held[fd]
        _unwatch(session)
        self.rt.open_sessions -= 1
        self._record(session.who, "session:disconnect", 0.0, taxonomy.disconnected(event.code),
                     event.reason[:120], close_code=event.code)  # fmt: skip

    def _record(self, who: Who, name: str, ms: float, failure: str | None = None,
                detail: str = "", close_code: int | None = None) -> None:  # fmt: skip
        self.rt.record(SessionEvent(time.time(), who, name, ms, failure, detail, close_code))

    # turns -----------------------------------------------------------------------------
    def _begin_turn(self, held: Held) -> None:
        rt = self.rt
        session = held.conn.session
        payload = rt.chat_payload(random.choice(rt.options.corpus.messages), session.thread_id)
        rt.inflight_turns += 1
        tracker = TurnTracker(
            rt.profile.events,
            rt.grammar,
            sent_at=_perf(),
            user_id=session.user_id,
            thread_id=session.thread_id,
            timeout_s=rt.options.turn_timeout_s,
            event_timeout_s=rt.options.event_timeout_s,
        )
        held.tracker = tracker
        held.turn = (time.time(), rt.new_turn(), rt.inflight_turns, len(payload))
        session.begin_turn(tracker)
        try:
            held.conn.send_text(payload)
        except OSError:
            tracker.disconnected(session.close_code or 1006, _perf())
            self._end_turn(held)

    def _end_turn(self, held: Held) -> None:
        tracker, held.tracker = held.tracker, None
        if tracker is None:
            return
        held.conn.session.end_turn()
        self.rt.inflight_turns -= 1
        started, number, inflight, size = held.turn
        self.rt.record(TurnRecord(started, held.who, number, inflight, size, tracker.result()))


_RNG = random.Random()
_FREEZER = PeakFreezer()  # this process's held sessions, frozen out of full collections
_SLOTS: dict[int, Any] = {}  # the process's handshake semaphore, by its size


def handshake_slots(limit: int) -> Any:
    """The process's bound on connection attempts in flight (``--max-handshakes``); None
    for no bound. A ramp faster than the server accepts then waits here, unmeasured, rather
    than in the server's accept queue, where each handshake's clock is already running."""
    if limit <= 0:
        return None
    slots = _SLOTS.get(limit)
    if slots is None:
        from gevent.lock import BoundedSemaphore

        _SLOTS.clear()
        slots = _SLOTS[limit] = BoundedSemaphore(limit)
    return slots


def _batch_reads(rt: Runtime) -> None:
    """Let arrivals gather for ``--io-batch`` ms before the loop reads them
    (``wsload.net.io_batch``), where their times come from the kernel (``ws://``); set
    again only when a run (from the web UI, say) asks for another interval."""
    stamped = rt.client_options.kernel_timestamps and rt.url.startswith("ws://")
    interval = rt.options.io_batch_ms / 1000.0 if stamped else 0.0
    if interval != _BATCHING[0]:
        _BATCHING[0] = interval
        batch_io(interval)


_BATCHING = [0.0]  # this process's read-batching interval, seconds


def _unwatch(session: Held) -> None:
    watcher, session.watcher = session.watcher, None
    if watcher is not None:
        watcher.stop()
        watcher.close()


# A worker opening thousands of sessions a second on a busy machine can miss Locust's
# worker heartbeat for more than its default 3 s; the master then drops the worker and
# stops the whole run. A connection-capacity run waits longer before it calls a worker gone.
WORKER_HEARTBEAT_LIVENESS = 30


def tolerate_busy_workers() -> None:
    """Give workers ``WORKER_HEARTBEAT_LIVENESS`` missed heartbeats (Locust reads the
    module constant each time a worker reports or connects)."""
    import locust.runners

    locust.runners.HEARTBEAT_LIVENESS = max(
        locust.runners.HEARTBEAT_LIVENESS, WORKER_HEARTBEAT_LIVENESS
    )
