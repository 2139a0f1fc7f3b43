"""``ChatUser``: one browser tab of an agent-chat frontend, under Locust, for hours.

Each user holds its own authenticated session (own subject, own token), has multi-turn
conversations on one thread, thinks between messages, judges every turn with a
``TurnTracker``, keeps its token fresh before it expires, pings at the profile's interval,
and when the connection drops, records the close and comes back with bounded exponential
backoff. A receive greenlet reads frames as they arrive and stamps them; the task greenlet
only sends and waits, so a turn's timings do not depend on when the task is scheduled.
"""

from __future__ import annotations

import random
import secrets
import time
from typing import Any

import gevent
from gevent.event import Event
from locust import User, task

from wsload import taxonomy
from wsload.config.profile import fill_template
from wsload.locust.credentials import UserCredentials
from wsload.locust.glue import Runtime, runtime_for
from wsload.net.client import ConnectError, Session, attempt_record, connect, not_before
from wsload.protocol.frames import decode_json
from wsload.protocol.tracker import FinishedTurns, TurnTracker
from wsload.run.records import SessionEvent, TurnRecord, Who

_perf = time.perf_counter
# Thread ids must not repeat across runs (a real backend may keep its threads): a random tag
# per process, then node, user and conversation number (cheaper than a uuid4 per thread).
_RUN_TAG = secrets.token_hex(4)


def _kill(*greenlets: gevent.Greenlet | None) -> None:
    """Stop side greenlets and wait until they are gone.

    A receiver must be dead before its session is closed: closing reads the socket for the
    server's close frame, and gevent allows only one greenlet to wait on a socket.
    """
    current = gevent.getcurrent()
    for greenlet in greenlets:
        if greenlet is not None and greenlet is not current:
            greenlet.kill(block=True, timeout=2.0)


class ChatUser(User):
    """Connects, waits for the ack, then chats: one turn per step, think time between."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.rt: Runtime | None = None
        self.index = 0
        self.subject = ""
        self.creds: UserCredentials | None = None
        self.session: Session | None = None
        self.session_id = ""
        self.sessions_opened = 0
        self.messages_in_session = 0
        self.thread_id = ""
        self._conversation: list[str] = []
        self._receiver: gevent.Greenlet | None = None
        self._heartbeat: gevent.Greenlet | None = None
        self._turn: TurnTracker | None = None
        self._finished: FinishedTurns | None = None  # replays of these turns are duplicates
        self._turn_done = Event()
        self._wake = Event()  # set when the session drops: stop thinking, reconnect
        self._pong = Event()
        self._ping_sent_at: float | None = None
        self._closing = False
        self._failed_attempts = 0
        self._disconnected_at: float | None = None
        self._rng = random.Random()
        self._due_at: float | None = None  # open model: when the next message is due
        self._conversations = 0

    def wait_time(self) -> float:
        return 0.0  # think time is taken inside the step, where refresh and drops wake it

    def context(self) -> dict[str, Any]:
        return {"wsload_user": (self.index, self.subject, self.session_id)}

    # lifecycle -------------------------------------------------------------------------
    def on_start(self) -> None:
        self.rt = runtime_for(self.environment)
        self.index, self.subject = self.rt.new_user()
        self._rng.seed(f"{self.rt.node}-{self.index}")
        self.creds = UserCredentials(self, self.rt, self.index, self.subject)
        self._finished = FinishedTurns(self.rt.profile.events, self.rt.grammar)
        self.creds.acquire()
        self._new_conversation()

    def on_stop(self) -> None:
        self._close_session()

    @task
    def chat(self) -> None:
        """The whole life of the tab, as one long task (no Locust scheduling per turn)."""
        while True:
            self._step()
            gevent.sleep(0)  # stay fair to the other users whatever the think time

    def _step(self) -> None:
        if not self._ready():
            return
        self._refresh_if_due()
        if self.session is None or not self.session.open:
            return
        self._run_turn(self._next_message())
        per_session = self.rt.options.messages_per_session
        if per_session and self.messages_in_session >= per_session:
            self._close_session()  # a planned new session, not a reconnect
            return
        if self.rt.options.send_interval_s > 0:
            self._wait_for_schedule()
        else:
            self._think()

    # samples ---------------------------------------------------------------------------
    def _sample(self, kind: str, name: str, ms: float, **fields: Any) -> None:
        """A session event: a ping, a refresh, a reconnect, a disconnect, a bad frame."""
        fields.pop("ok", None)  # a failure id says it failed
        self.rt.record(SessionEvent(time.time(), self._who(), name, ms, **fields))

    def _who(self) -> Who:
        return Who(self.index, self.subject, self.session_id)

    # sessions --------------------------------------------------------------------------
    def _ready(self) -> bool:
        """An open session, reconnecting (with backoff after failures) when there is none."""
        if self.session is not None and self.session.open:
            return True
        if self.session is not None:
            self._close_session()
        if self._failed_attempts:
            delay = self.rt.options.backoff.delay(self._failed_attempts - 1, self._rng)
            gevent.sleep(delay)
        if self.creds.token is None and not self.creds.acquire():
            self._failed_attempts += 1
            return False
        if not self._open_session():
            self._failed_attempts += 1
            return False
        if self._disconnected_at is not None:
            # The drop is a session stamp, never later than perf_counter at its read: >= 0.
            self._sample(
                "session",
                "session:reconnect",
                (not_before(self._disconnected_at, _perf()) - self._disconnected_at) * 1000.0,
                detail=f"ready again after {self._failed_attempts + 1} attempts",
            )
            self._disconnected_at = None
        self._failed_attempts = 0
        return True

    def _open_session(self) -> bool:
        """Connect and authenticate with the current token; record connect and auth."""
        rt = self.rt
        self.sessions_opened += 1
        self.session_id = f"{rt.node}-{self.index}-{self.sessions_opened}"
        placement = self.creds.placement()
        if placement is None:
            return False
        rt.inflight_handshakes += 1
        inflight = rt.inflight_handshakes
        try:
            outcome: Session | ConnectError = connect(
                rt.url,
                rt.profile,
                placement,
                expected_subject=self.creds.expected_subject,
                options=rt.client_options,
            )
        except ConnectError as err:
            outcome = err
        finally:
            rt.inflight_handshakes -= 1
        record, session = attempt_record(outcome, self._who(), inflight)
        rt.record(record)
        if session is None:
            return False
        self._attach(session)
        return True

    def _attach(self, session: Session) -> None:
        self.session = session
        self.messages_in_session = 0
        self._closing = False
        self._wake.clear()
        self._receiver = gevent.spawn(self._receive, session)
        if self.rt.options.heartbeat_interval_s > 0:
            self._heartbeat = gevent.spawn(self._beat, session)

    def _stop_side_greenlets(self) -> None:
        _kill(self._receiver, self._heartbeat)
        self._receiver = self._heartbeat = None

    def _close_session(self) -> None:
        self._closing = True
        self._stop_side_greenlets()
        if self.session is not None:
            self.session.close(timeout=1.0)
            self.session = None

    # token refresh ---------------------------------------------------------------------
    def _refresh_if_due(self) -> None:
        due = self.creds.due_in()
        if due is None or due > 0:
            return
        started = _perf()
        if not self.creds.refresh():
            return  # the failed login/refresh is recorded; the old token serves until it fails
        method = self.rt.profile.auth.refresh
        ok = True
        if method == "in_band" and self.session is not None and self.session.open:
            message = fill_template(
                self.rt.profile.auth.refresh_message, {"token": self.creds.token}
            )
            try:
                self.session.send_json(message)
            except OSError:
                ok = False
        elif method == "reconnect" and self.session is not None:
            ok = self._swap_session()
        self._sample(
            "session",
            "session:refresh",
            (_perf() - started) * 1000.0,
            ok=ok,
            failure=None if ok else "refresh_failed",
            detail=f"{method}; token valid {self.creds.lifetime_s:.0f} s",
        )

    def _swap_session(self) -> bool:
        """Reconnect with the new token; make-before-break when the profile allows two."""
        old, old_receiver, old_heartbeat = self.session, self._receiver, self._heartbeat
        if self.rt.profile.limits.connections_per_user < 2:
            self._close_session()
            return self._open_session()
        self._receiver = self._heartbeat = None
        self.session = None
        opened = self._open_session()
        _kill(old_receiver, old_heartbeat)
        if old is not None:
            old.close(timeout=1.0)
        return opened

    # conversation ----------------------------------------------------------------------
    def _new_conversation(self) -> None:
        opts = self.rt.options
        self._conversation = opts.corpus.conversation(self._rng, opts.turns_per_conversation)
        self._conversations += 1
        self.thread_id = f"thread-{_RUN_TAG}-{self.rt.node}-{self.index}-{self._conversations}"

    def _next_message(self) -> str:
        if not self._conversation:
            self._new_conversation()
        return self._conversation.pop(0)

    def _wait_for_schedule(self) -> None:
        """Open model: the next message is due at a fixed time, however long turns take."""
        interval = self.rt.options.send_interval_s
        if self._due_at is None:
            self._due_at = _perf() + self._rng.uniform(0, interval)  # users spread out
        else:
            self._due_at += interval
        self._wait_until(self._due_at)

    def _think(self) -> None:
        """Wait the think time; wake early to refresh a token or when the session drops."""
        self._wait_until(_perf() + self.rt.options.think_time.sample(self._rng))

    def _wait_until(self, until: float) -> None:
        while (remaining := until - _perf()) > 0:
            due = self.creds.due_in()
            if due is not None and due < remaining:
                if self._wake.wait(max(0.0, due)):
                    return
                self._refresh_if_due()
                continue
            if self._wake.wait(remaining):
                return

    # turns -----------------------------------------------------------------------------
    def _run_turn(self, content: str) -> None:
        rt = self.rt
        session = self.session
        turn_no = rt.new_turn()
        payload = rt.chat_payload(content, self.thread_id)
        started_wall = time.time()
        rt.inflight_turns += 1
        inflight = rt.inflight_turns
        tracker = TurnTracker(
            rt.profile.events,
            rt.grammar,
            sent_at=_perf(),
            user_id=session.user_id,
            thread_id=self.thread_id,
            timeout_s=rt.options.turn_timeout_s,
            event_timeout_s=rt.options.event_timeout_s,
        )
        self._turn_done.clear()
        self._turn = tracker
        try:
            session.send_text(payload)
        except OSError:
            tracker.disconnected(session.close_code or 1006, _perf())
        self.messages_in_session += 1
        try:
            while not tracker.done:
                remaining = tracker.deadline() - _perf()
                if remaining <= 0:
                    tracker.expire(_perf())
                    break
                self._turn_done.wait(remaining)
        finally:
            rt.inflight_turns -= 1
            self._turn = None
        result = tracker.result()
        intended_ms = None
        if self._due_at is not None:  # latency from when the message was due, not sent
            intended_ms = result.elapsed_ms + (tracker.sent_at - self._due_at) * 1000.0
        rt.record(
            TurnRecord(
                started_wall, self._who(), turn_no, inflight, len(payload), result, intended_ms
            )
        )

    # receiving -------------------------------------------------------------------------
    def _receive(self, session: Session) -> None:
        """Reads frames until the session closes; feeds the current turn.

        Whatever a server sends is classified, never trusted: a frame that is not a JSON
        object, an event without a type, or of a type the profile does not know is a
        ``protocol_error`` (unknown types never become stats names, so a hostile server
        cannot grow Locust's tables without bound).
        """
        rt = self.rt
        pong_type = rt.profile.heartbeat.pong_type
        type_field = rt.profile.events.type_field
        known = rt.known_events
        server_errors = rt.profile.rejection.error_types
        finished = self._finished
        while True:
            frame = session.recv(None)
            if frame is None:
                continue
            if frame.kind == "close":
                if frame.violation:
                    self._protocol_error(f"closed {frame.close_code}: {frame.violation}")
                self._on_closed(frame.close_code, frame.close_reason, frame.received_at)
                return
            if frame.kind != "text":
                self._protocol_error("a binary frame where JSON text was expected")
                continue
            try:
                event = decode_json(frame.text or "")
            except ValueError:
                event = None
            if not isinstance(event, dict):
                self._protocol_error("a text frame that is not a JSON object")
                continue
            name = event.get(type_field)
            if name == pong_type and (sent := self._ping_sent_at) is not None:
                # sent on perf_counter, received on the kernel's clock: no pong before its ping
                self._sample("session", "ping", (not_before(sent, frame.received_at) - sent) * 1e3)
                self._ping_sent_at = None
                self._pong.set()
                continue
            if not isinstance(name, str):
                self._protocol_error(f"an event without a string {type_field!r} field")
                continue
            if name in server_errors:
                code = event.get(rt.profile.rejection.error_code_field)
                self._sample(
                    "session",
                    "session:error",
                    0.0,
                    ok=False,
                    failure=taxonomy.SERVER_ERROR,
                    detail=f"{name} {str(code)[:60]}",
                )
                continue
            if name not in known:
                self._protocol_error(f"an event of unknown type {name[:40]!r}")
                continue
            # An event of a turn that has ended (even if the next one has begun) is a
            # duplicate: never the current turn's, never a stray.
            repeated = finished.duplicate(event, frame.text)
            if repeated is not None:
                self._sample(
                    "session",
                    "session:duplicate",
                    0.0,
                    ok=False,
                    failure=taxonomy.SEQUENCE_DUPLICATE,
                    detail=repeated[:200],
                )
                continue
            turn = self._turn
            if turn is not None and not turn.done:
                if turn.feed(event, frame.received_at, frame.text):
                    finished.add(turn)  # here, before the next frame is read
                    self._turn_done.set()
            else:
                self._check_stray(event, session)

    def _protocol_error(self, detail: str) -> None:
        self._sample(
            "session",
            "session:frame",
            0.0,
            ok=False,
            failure=taxonomy.PROTOCOL_ERROR,
            detail=detail[:200],
        )

    def _on_closed(self, code: int | None, reason: str, at: float) -> None:
        turn = self._turn
        if turn is not None and not turn.done:
            turn.disconnected(code, at)
            self._turn_done.set()
        if self._closing:
            return
        self._sample(
            "session",
            "session:disconnect",
            0.0,
            ok=False,
            failure=taxonomy.disconnected(code),
            close_code=code,
            detail=reason[:120],
        )
        self._disconnected_at = at
        self._wake.set()

    def _check_stray(self, event: dict[str, Any], session: Session) -> None:
        """An event outside any turn must still be this session's: isolation check."""
        cfg = self.rt.profile.events
        for field_name, mine in (
            (cfg.user_id_field, session.user_id),
            (cfg.thread_id_field, self.thread_id),
        ):
            theirs = event.get(field_name)
            if mine and theirs is not None and str(theirs) != mine:
                self._sample(
                    "session",
                    "session:isolation",
                    0.0,
                    ok=False,
                    failure=taxonomy.FOREIGN_EVENT,
                    detail=f"{event.get(cfg.type_field)} between turns: {field_name} is not ours",
                )
                return

    def _beat(self, session: Session) -> None:
        """Ping at the heartbeat interval; a missing pong means a half-open connection."""
        opts = self.rt.options
        ping = self.rt.profile.heartbeat.ping
        while session.open:
            gevent.sleep(opts.heartbeat_interval_s)
            if not session.open:
                return
            self._pong.clear()
            self._ping_sent_at = _perf()
            try:
                session.send_json(ping)
            except OSError:
                return
            if not self._pong.wait(opts.pong_timeout_s):
                self._sample(
                    "session",
                    "ping",
                    opts.pong_timeout_s * 1000.0,
                    ok=False,
                    failure="pong_timeout",
                    detail=f"no pong in {opts.pong_timeout_s:g} s: connection half-open",
                )
                session.abort()
                self._on_closed(1006, "no pong", _perf())
                return
