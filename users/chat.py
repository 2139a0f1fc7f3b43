"""``ChatUser``: one browser tab of an agent-chat frontend, under Locust.

Each user holds its own authenticated session (own subject, own token), sends chat
messages with think time and judges every turn with a ``TurnTracker``. A receive greenlet
reads frames as they arrive and stamps them; the task greenlet only sends and waits, so a
turn's timings do not depend on when the task happens to be scheduled.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import gevent
from gevent.event import Event
from locust import User, task
from websocket import WebSocketException

from wsload import taxonomy
from wsload.carrier import place
from wsload.client import ConnectError, Session, connect
from wsload.locust_glue import Runtime, runtime_for
from wsload.profile import fill_template
from wsload.tracker import TurnResult, TurnTracker

_perf = time.perf_counter


class ChatUser(User):
    """Connects, waits for the ack, then chats: one turn per task, think time between."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.rt: Runtime | None = None
        self.index = 0
        self.subject = ""
        self.session: Session | None = None
        self.session_id = ""
        self.thread_id = ""
        self.sessions_opened = 0
        self.messages_in_session = 0
        self._receiver: gevent.Greenlet | None = None
        self._turn: TurnTracker | None = None
        self._turn_done = Event()
        self._closing = False

    def wait_time(self) -> float:
        return self.rt.options.think_time_s if self.rt else 1.0

    # lifecycle -------------------------------------------------------------------------
    def on_start(self) -> None:
        self.rt = runtime_for(self.environment)
        self.index, self.subject = self.rt.new_user()
        self._open_session()

    def on_stop(self) -> None:
        self._close_session()

    @task
    def chat(self) -> None:
        if self.session is None or not self.session.open:
            self._close_session()
            self._open_session()
            return
        self._run_turn()
        per_session = self.rt.options.messages_per_session
        if per_session and self.messages_in_session >= per_session:
            self._close_session()

    # sessions --------------------------------------------------------------------------
    def _sample(self, kind: str, name: str, ms: float, **fields: Any) -> None:
        self.rt.record(
            kind,
            name,
            ms,
            user=self.index,
            subject=self.subject,
            session=self.session_id,
            **fields,
        )

    def _open_session(self) -> bool:
        rt = self.rt
        self.sessions_opened += 1
        self.session_id = f"{rt.node}-{self.index}-{self.sessions_opened}"
        token = rt.minter.mint(self.subject)
        placement = place(rt.profile.auth, rt.url, token, carrier=rt.options.carrier)
        try:
            session = connect(
                rt.url,
                rt.profile,
                placement,
                expected_subject=self.subject,
                options=rt.client_options,
            )
        except ConnectError as err:
            session = self._report_connect_error(err)
            if session is None:
                return False
        else:
            self._report_connected(session)
        self.session = session
        self.thread_id = f"thread-{uuid.uuid4().hex[:16]}"
        self.messages_in_session = 0
        self._closing = False
        self._receiver = gevent.spawn(self._receive, session)
        return True

    def _report_connected(self, session: Session) -> None:
        t = session.timings
        self._sample("connect", "connect", t.connect_ms or 0.0, started_at=t.started_at)
        self._sample("auth", "auth", t.auth_ms or 0.0, started_at=t.started_at)

    def _report_connect_error(self, err: ConnectError) -> Session | None:
        t = err.timings
        fields = dict(
            started_at=t.started_at,
            failure=err.failure,
            detail=err.detail,
            http_status=err.http_status,
            close_code=err.close_code,
            ok=False,
        )
        if err.phase == "connect":
            elapsed = (time.time() - t.started_at) * 1000.0
            self._sample("connect", "connect", elapsed, **fields)
            return None
        self._sample("connect", "connect", t.connect_ms or 0.0, started_at=t.started_at)
        self._sample("auth", "auth", t.auth_ms or 0.0, **fields)
        return err.session  # identity_mismatch: the session works, keep measuring it

    def _close_session(self) -> None:
        self._closing = True
        if self._receiver is not None:
            self._receiver.kill(block=False)
            self._receiver = None
        if self.session is not None:
            self.session.close(timeout=1.0)
            self.session = None

    # turns -----------------------------------------------------------------------------
    def _run_turn(self) -> None:
        rt = self.rt
        session = self.session
        turn_no = rt.new_turn()
        message = fill_template(
            rt.profile.chat.message,
            {"content": rt.options.chat_message, "thread_id": self.thread_id},
        )
        payload = json.dumps(message, separators=(",", ":"))
        started_wall = time.time()
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
        except (OSError, WebSocketException):
            tracker.disconnected(session.close_code or 1006, _perf())
        self.messages_in_session += 1
        while not tracker.done:
            remaining = tracker.deadline() - _perf()
            if remaining <= 0:
                tracker.expire(_perf())
                break
            self._turn_done.wait(remaining)
        self._turn = None
        self._report_turn(tracker.result(), started_wall, turn_no)

    def _report_turn(self, result: TurnResult, started_wall: float, turn_no: int) -> None:
        common = dict(started_at=started_wall, turn=turn_no)
        if result.ttfe_ms is not None:
            self._sample("event", "turn:ttfe", result.ttfe_ms, **common)
        for name, ms in result.first_ms.items():
            self._sample("event", f"turn:{name}", ms, **common)
        for gap in result.gaps_ms:
            self._sample("gap", "turn:gap", gap, **common)
        for span, ms in result.spans_ms:
            self._sample("span", f"turn:{span}", ms, **common)
        self._sample(
            "turn",
            "turn:e2e",
            result.e2e_ms if result.ok and result.e2e_ms is not None else result.elapsed_ms,
            ok=result.ok,
            failure=result.failure,
            detail="; ".join(d for _, d in result.failures)[:300],
            events_count=result.events,
            **common,
        )

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
                    "isolation",
                    0.0,
                    ok=False,
                    failure=taxonomy.FOREIGN_EVENT,
                    detail=f"{event.get(cfg.type_field)} between turns: {field_name} is not ours",
                )
                return

    def _receive(self, session: Session) -> None:
        """Reads frames until the session closes; feeds the current turn."""
        while True:
            frame = session.recv(None)
            if frame is None:
                continue
            if frame.kind == "text":
                try:
                    event = json.loads(frame.text or "")
                except ValueError:
                    event = None
                if not isinstance(event, dict):
                    self._sample(
                        "session",
                        "frame",
                        0.0,
                        ok=False,
                        failure=taxonomy.PROTOCOL_ERROR,
                        detail="a text frame that is not a JSON object",
                    )
                    continue
                turn = self._turn
                if turn is not None and not turn.done:
                    if turn.feed(event, frame.received_at, frame.text):
                        self._turn_done.set()
                else:
                    self._check_stray(event, session)
            elif frame.kind == "close":
                turn = self._turn
                if turn is not None and not turn.done:
                    turn.disconnected(frame.close_code, frame.received_at)
                    self._turn_done.set()
                if not self._closing:
                    self._sample(
                        "session",
                        "disconnect",
                        0.0,
                        ok=False,
                        failure=taxonomy.disconnected(frame.close_code),
                        close_code=frame.close_code,
                        detail=frame.close_reason[:120],
                    )
                return
