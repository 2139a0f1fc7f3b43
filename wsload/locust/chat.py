"""``ChatUser``: one browser tab of an agent-chat frontend, under Locust, for hours.

Each user holds its own authenticated session (own subject, own token), has multi-turn
conversations on one thread, thinks between messages (or follows the open model's
clock), keeps its token fresh before it expires, and when the connection drops comes back
with bounded exponential backoff. This class only decides what to send and when; the
protocol is the session's (``wsload.protocol.session``), reading and pinging are the
connection's (``wsload.locust.chat_connection``), what to say is the conversation's.
"""

from __future__ import annotations

import random
import time
from typing import Any

import gevent
from gevent.event import Event
from locust import User, task

from wsload.config.templates import fill_template
from wsload.locust.chat_connection import ChatConnection
from wsload.locust.conversation import Conversation, Pacing
from wsload.locust.credentials import UserCredentials
from wsload.locust.runtime import Runtime, runtime_for
from wsload.net.client import ConnectError, Connection, attempt_record, connect, not_before
from wsload.net.tls import TlsResume
from wsload.protocol.tracker import FinishedTurns, TurnTracker
from wsload.run.records import SessionEvent, TurnRecord, Who

_perf = time.perf_counter


class ChatUser(User):
    """Connects, waits for the ack, then chats: one turn per step, think time between."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.rt: Runtime | None = None
        self.index = 0
        self.subject = ""
        self.creds: UserCredentials | None = None
        self.link: ChatConnection | None = None
        self.session_id = ""
        self.sessions_opened = 0
        self.messages_in_session = 0
        self.conversation: Conversation | None = None
        self.pacing: Pacing | None = None
        self._finished: FinishedTurns | None = None  # replays of these turns are duplicates
        self._tls_resume = TlsResume()  # wss://: reconnects resume the TLS session
        self._wake = Event()  # set when the session drops: stop thinking, reconnect
        self._failed_attempts = 0
        self._disconnected_at: float | None = None
        self._rng = random.Random()

    def wait_time(self) -> float:
        return 0.0  # think time is taken inside the step, where refresh and drops wake it

    def context(self) -> dict[str, Any]:
        return {"wsload_user": (self.index, self.subject, self.session_id)}

    @property
    def thread_id(self) -> str:
        return self.conversation.thread_id if self.conversation is not None else ""

    # lifecycle -------------------------------------------------------------------------
    def on_start(self) -> None:
        rt = self.rt = runtime_for(self.environment)
        self.index, self.subject = rt.new_user()
        self._rng.seed(f"{rt.node}-{self.index}")
        self.creds = UserCredentials(self, rt, self.index, self.subject)
        self._finished = FinishedTurns(rt.profile.events, rt.grammar)
        self.creds.acquire()
        self.conversation = Conversation(rt.options, rt.node, self.index, self._rng)
        self.pacing = Pacing(rt.options, self._rng)

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
        if self.link is None or not self.link.open:
            return
        self._run_turn(self.conversation.next_message())
        per_session = self.rt.options.messages_per_session
        if per_session and self.messages_in_session >= per_session:
            self._close_session()  # a planned new session, not a reconnect
            return
        self._wait_until(self.pacing.next_due())

    def _who(self) -> Who:
        return Who(self.index, self.subject, self.session_id)

    def _record_session(self, name: str, ms: float, failure: str | None, detail: str) -> None:
        self.rt.record(SessionEvent(time.time(), self._who(), name, ms, failure, detail))

    # sessions --------------------------------------------------------------------------
    def _ready(self) -> bool:
        """An open session, reconnecting (with backoff after failures) when there is none."""
        if self.link is not None and self.link.open:
            return True
        if self.link is not None:
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
            self._record_session(
                "session:reconnect",
                (not_before(self._disconnected_at, _perf()) - self._disconnected_at) * 1000.0,
                None,
                f"ready again after {self._failed_attempts + 1} attempts",
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
            outcome: Connection | ConnectError = connect(
                rt.url,
                rt.profile,
                placement,
                expected_subject=self.creds.expected_subject,
                options=rt.client_options,
                finished=self._finished,
                tls_resume=self._tls_resume,
            )
        except ConnectError as err:
            outcome = err
        finally:
            rt.inflight_handshakes -= 1
        who = self._who()
        record, conn = attempt_record(outcome, who, inflight)
        rt.record(record)
        if conn is None:
            return False
        conn.session.thread_id = self.thread_id
        self.link = ChatConnection(conn, rt, who, self._dropped)
        self.messages_in_session = 0
        self._wake.clear()
        return True

    def _dropped(self, at: float) -> None:
        """The server closed the session or the link broke: stop thinking, reconnect."""
        self._disconnected_at = at
        self._wake.set()

    def _close_session(self) -> None:
        if self.link is not None:
            self.link.close(timeout=1.0)
            self.link = None

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
        if method == "in_band" and self.link is not None and self.link.open:
            message = fill_template(
                self.rt.profile.auth.refresh_message, {"token": self.creds.token}
            )
            try:
                self.link.conn.send_message(message)
            except OSError:
                ok = False
        elif method == "reconnect" and self.link is not None:
            ok = self._swap_session()
        self._record_session(
            "session:refresh",
            (_perf() - started) * 1000.0,
            None if ok else "refresh_failed",
            f"{method}; token valid {self.creds.lifetime_s:.0f} s",
        )

    def _swap_session(self) -> bool:
        """Reconnect with the new token; make-before-break when the profile allows two."""
        if self.rt.profile.limits.connections_per_user < 2:
            self._close_session()
            return self._open_session()
        old, self.link = self.link, None
        opened = self._open_session()
        if old is not None:
            old.close(timeout=1.0)
        return opened

    # waiting ---------------------------------------------------------------------------
    def _wait_until(self, until: float) -> None:
        """Wait until the next message is due; wake early to refresh a token or when the
        session drops."""
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
        link = self.link
        turn_no = rt.new_turn()
        thread_id = self.thread_id
        payload = rt.chat_payload(content, thread_id)
        started_wall = time.time()
        rt.inflight_turns += 1
        inflight = rt.inflight_turns
        session = link.session
        session.thread_id = thread_id
        tracker = TurnTracker(
            rt.profile.events,
            rt.grammar,
            sent_at=_perf(),
            user_id=session.user_id,
            thread_id=thread_id,
            timeout_s=rt.options.turn_timeout_s,
            event_timeout_s=rt.options.event_timeout_s,
            stream=rt.profile.stream,
        )
        try:
            link.run_turn(tracker, payload)
        finally:
            rt.inflight_turns -= 1
        self.messages_in_session += 1
        result = tracker.result()
        intended_ms = None
        due_at = self.pacing.due_at
        if due_at is not None:  # latency from when the message was due, not sent
            intended_ms = result.elapsed_ms + (tracker.sent_at - due_at) * 1000.0
        rt.record(
            TurnRecord(started_wall, link.who, turn_no, inflight, len(payload), result, intended_ms)
        )
