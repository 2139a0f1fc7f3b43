"""One open connection of a chat user: read in a greenlet of its own, pinged in another.

The reader stamps what arrives and feeds the session as soon as it comes, so a turn's
timings do not depend on when the user's task greenlet is scheduled; what the session
reports (a turn's end, a pong, someone else's event, a duplicate, an error frame, a
malformed frame, the close) becomes a record here. The heartbeat sends the profile's
ping at its interval and drops the connection when no pong comes back (half-open).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
from gevent.event import Event

from wsload import taxonomy
from wsload.net.client import Connection
from wsload.protocol.events import (
    Closed,
    Duplicate,
    Foreign,
    Pong,
    ProtocolError,
    ServerError,
    TurnEnded,
)
from wsload.protocol.tracker import TurnTracker
from wsload.run.records import SessionEvent, Who

if TYPE_CHECKING:
    from wsload.locust.runtime import Runtime

_perf = time.perf_counter
PONG_TIMEOUT = "pong_timeout"

# session events that are failures of the session: (stats name, taxonomy id, detail size)
_FAILURES: dict[type, tuple[str, str, int]] = {
    Foreign: ("session:isolation", taxonomy.FOREIGN_EVENT, 300),
    Duplicate: ("session:duplicate", taxonomy.SEQUENCE_DUPLICATE, 200),
    ServerError: ("session:error", taxonomy.SERVER_ERROR, 300),
    ProtocolError: ("session:frame", taxonomy.PROTOCOL_ERROR, 200),
}


def kill(*greenlets: gevent.Greenlet | None) -> None:
    """Stop side greenlets and wait until they are gone.

    A reader must be dead before its connection is closed: closing reads the socket for
    the server's close frame, and gevent allows only one greenlet to wait on a socket.
    """
    current = gevent.getcurrent()
    for greenlet in greenlets:
        if greenlet is not None and greenlet is not current:
            greenlet.kill(block=True, timeout=2.0)


#: this process's chat connections (the open ones count as open sessions in the metrics)
LINKS: weakref.WeakSet[ChatConnection] = weakref.WeakSet()


class ChatConnection:
    """A connection while its user holds it: runs turns on it, records what it reports."""

    def __init__(
        self,
        conn: Connection,
        rt: Runtime,
        who: Who,
        on_drop: Callable[[float], None],
    ) -> None:
        self.conn = conn
        self.session = conn.session
        self.rt = rt
        self.who = who
        self.closing = False  # closed by its user: a close is no disconnect
        self._on_drop = on_drop
        self._turn_done = Event()
        self._pong = Event()
        self._reader = gevent.spawn(self._read)
        interval = rt.options.heartbeat_interval_s
        self._heartbeat = gevent.spawn(self._beat, interval) if interval > 0 else None
        LINKS.add(self)

    @property
    def open(self) -> bool:
        return self.conn.open

    # turns -----------------------------------------------------------------------------
    def run_turn(self, tracker: TurnTracker, payload: str) -> None:
        """Send the message of ``tracker``'s turn and wait for its verdict (or deadline)."""
        session = self.session
        done = self._turn_done
        done.clear()
        session.begin_turn(tracker)
        try:
            try:
                self.conn.send_text(payload)
            except OSError:
                tracker.disconnected(session.close_code or 1006, _perf())
            while not tracker.done:
                remaining = tracker.deadline() - _perf()
                if remaining <= 0:
                    tracker.expire(_perf())
                    break
                done.wait(remaining)
        finally:
            session.end_turn()

    # closing ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading and pinging (the connection stays as it is)."""
        self.closing = True
        kill(self._reader, self._heartbeat)
        self._reader = self._heartbeat = None

    def close(self, timeout: float = 1.0) -> None:
        self.stop()
        self.conn.close(timeout=timeout)

    # the greenlets ---------------------------------------------------------------------
    def _record(self, name: str, ms: float, failure: str | None = None, detail: str = "",
                close_code: int | None = None) -> None:  # fmt: skip
        self.rt.record(SessionEvent(time.time(), self.who, name, ms, failure, detail, close_code))

    def _read(self) -> None:
        """Reads until the connection closes; wakes the turn when it ends."""
        receive = self.conn.receive
        turn_done = self._turn_done
        while True:
            events = receive(None)
            if events is None:
                continue
            for event in events:
                kind = type(event)
                if kind is TurnEnded:
                    turn_done.set()
                elif kind is Closed:
                    self._closed(event)  # type: ignore[arg-type]
                    return
                elif kind is Pong:
                    self._record("ping", event.ms)  # type: ignore[union-attr]
                    self._pong.set()
                elif kind in _FAILURES:
                    name, failure, size = _FAILURES[kind]
                    self._record(name, 0.0, failure, event.detail[:size])  # type: ignore[union-attr]

    def _closed(self, event: Closed) -> None:
        turn = self.session.turn
        if turn is not None and not turn.done:
            turn.disconnected(event.code, event.at)
            self._turn_done.set()
        if self.closing:
            return
        self._record(
            "session:disconnect",
            0.0,
            taxonomy.disconnected(event.code),
            event.reason[:120],
            close_code=event.code,
        )
        self._on_drop(event.at)

    def _beat(self, interval: float) -> None:
        """Ping at the heartbeat interval; a missing pong means a half-open connection."""
        timeout = self.rt.options.pong_timeout_s
        conn = self.conn
        while conn.open:
            gevent.sleep(interval)
            if not conn.open:
                return
            self._pong.clear()
            try:
                conn.ping()
            except OSError:
                return
            if not self._pong.wait(timeout):
                self._record(
                    "ping",
                    timeout * 1000.0,
                    PONG_TIMEOUT,
                    f"no pong in {timeout:g} s: connection half-open",
                )
                self.session.cancel_ping()
                conn.abort("no pong")  # the reader reports the drop
                return
