"""One client WebSocket session of an agent-chat backend, sans I/O: bytes and times in,
events and bytes to send out.

A ``ClientSession`` is what a browser tab's WebSocket is, minus the socket: it checks the
server's 101 (``wsload.protocol.upgrade``), waits for the ack or the rejection and checks
whose session it is, answers control pings, runs the close handshake, turns framing
violations into a close, and sorts every message the server sends into exactly one of:
this turn's event (fed to the ``TurnTracker`` it holds; the end of the turn is reported),
the pong of our ping, a heartbeat, a stray of ours between turns, someone else's event
(isolation), a repeat of a finished turn (duplicate), a server error, or a protocol error.

It has no socket and no clock: the caller feeds it what it read with when it arrived
(``receive_data(data, at)``, ``receive_eof(at)``), tells it the time when waiting for
the ack (``timeout(now)``), sends what ``data_to_send()`` and the ``send_*`` helpers
return, and acts on the events. So tests, the gevent adapter (``wsload.net.client``) and
any other I/O drive the same logic. Times are ``perf_counter`` seconds; stamps never go
backwards (each is raised to the one before, the first to when the request went out), so
no duration it reports is negative, and the 101's arrival is where ``auth`` starts.

What rides inside each WebSocket message is a codec's business (``wsload.protocol.codec``:
JSON text today; Socket.IO plugs in there), so the session stays the same whatever the
transport. permessage-deflate sits between the frames and the codec: when the 101 agrees
to it (``wsload.protocol.deflate``), the parser inflates and every message goes deflated.
"""

from __future__ import annotations

import struct
from typing import Any

from wsload import taxonomy
from wsload.config.profile import Profile
from wsload.config.templates import get_field
from wsload.protocol.codec import Codec, CodecError, JsonTextCodec
from wsload.protocol.deflate import negotiate
from wsload.protocol.events import (
    Acked,
    Closed,
    Duplicate,
    Event,
    Foreign,
    Pong,
    ProtocolError,
    Rejected,
    ServerError,
    Stray,
    TurnEnded,
    Upgraded,
    UpgradeFailed,
)
from wsload.protocol.frames import (
    CLOSE,
    DEFAULT_MAX_MESSAGE_BYTES,
    PONG,
    FrameError,
    FrameParser,
    client_frame,
    close_payload,
)
from wsload.protocol.socketio_names import CONNECT_ERROR_EVENT, CONNECT_EVENT, connect_refusal
from wsload.protocol.tracker import FinishedTurns, TurnTracker
from wsload.protocol.upgrade import (
    HandshakeError,
    HeadReader,
    UpgradeRequest,
    check_response,
)

EXTENSIONS = "sec-websocket-extensions"

# the session ---------------------------------------------------------------------------
CONNECTING, AWAITING_ACK, OPEN, CLOSED = "connecting", "awaiting_ack", "open", "closed"
REJECTION_GRACE_S = 1.0  # after an error frame before the ack: how long the close may take


_NEVER = object()  # equal to no event type


class _Rules:
    """What a profile says about messages, compiled once per profile."""

    __slots__ = (
        "ack_matchers", "ack_required", "ack_timeout_s", "auth_error_codes", "codec",
        "connect_error", "error_code_field", "grammar", "heartbeats", "known", "own_fields",
        "ping", "pong_field",
        "pong_name", "pong_type", "rejection_closes", "rejection_field", "server_error_names",
        "server_errors", "stray_fields", "type_field", "user_id_field",
    )  # fmt: skip

    def __init__(self, profile: Profile) -> None:
        events, heartbeat, rejection = profile.events, profile.heartbeat, profile.rejection
        # compiled once per profile (``profile.grammar`` compiles on every access), so that
        # every session's ``FinishedTurns`` shares it and the tracker's rules for it
        self.grammar = grammar = profile.grammar
        self.codec = JsonTextCodec(events.type_field)  # stateless: shared by the sessions
        self.type_field = events.type_field
        self.known = frozenset(
            {*grammar.names, *events.optional, *events.error, *events.ignore}
            | {heartbeat.pong_type, heartbeat.server_heartbeat_type}
        )
        self.heartbeats = frozenset(
            {*events.ignore, heartbeat.pong_type, heartbeat.server_heartbeat_type}
        )
        self.pong_type = heartbeat.pong_type
        self.ping = heartbeat.ping
        self.server_errors = frozenset(rejection.error_types)
        # A pong or error frame may carry its type in a field of its own (a backend whose
        # events say "event" and whose pong says "type"); None: the events' type field.
        pong_field = heartbeat.pong_type_field or events.type_field
        rejection_field = rejection.type_field or events.type_field
        self.pong_field = None if pong_field == events.type_field else pong_field
        self.rejection_field = None if rejection_field == events.type_field else rejection_field
        self.own_fields = self.pong_field is not None or self.rejection_field is not None
        self.pong_name = heartbeat.pong_type if self.pong_field is None else _NEVER
        self.server_error_names = self.server_errors if self.rejection_field is None else ()
        self.error_code_field = rejection.error_code_field
        self.auth_error_codes = frozenset(rejection.auth_error_codes)
        self.rejection_closes = frozenset(rejection.close_codes)
        self.ack_required = profile.ack.required
        self.ack_matchers = profile.ack.match
        self.ack_timeout_s = profile.ack.timeout_s
        self.user_id_field = profile.ack.user_id_field
        # Socket.IO: a CONNECT refused (44) is a rejection at once; no close frame follows
        socketio = profile.transport.framing == "socketio"
        self.connect_error = CONNECT_ERROR_EVENT if socketio else _NEVER
        if socketio:  # a CONNECT ack after the profile's ack (servers emit before it): nothing
            self.known |= {CONNECT_EVENT}
            self.heartbeats |= {CONNECT_EVENT}
        self.stray_fields = (events.user_id_field, events.thread_id_field)


_RULES: dict[int, tuple[Profile, _Rules]] = {}


def _rules(profile: Profile) -> _Rules:
    cached = _RULES.get(id(profile))
    if cached is None or cached[0] is not profile:
        cached = _RULES[id(profile)] = (profile, _Rules(profile))
    return cached[1]


def matches_any(message: dict[str, Any], matchers: tuple[dict[str, Any], ...]) -> bool:
    """Whether every field of at least one matcher equals the message's value there."""
    return any(all(get_field(message, k) == v for k, v in m.items()) for m in matchers)


class ClientSession:
    """One session's protocol state: feed it what arrives, send what it returns.

    Thousands are held at once, so it keeps what the open session needs and no more: the
    request, the offered subprotocols and the head reader go once the 101 is checked (the
    full answer rides in the ``Upgraded`` event; the session keeps its ``subprotocol``).
    """

    __slots__ = (
        "_ack_timeout_s",
        "_close_sent",
        "_data_frame",
        "_deadline",
        "_error_code",
        "_finished",
        "_floor",
        "_head",
        "_outgoing",
        "_parser",
        "_ping_sent_at",
        "_replies",
        "_rules",
        "auth_ms",
        "bytes_received",
        "close_code",
        "close_reason",
        "codec",
        "expected_subject",
        "extensions",
        "offered",
        "profile",
        "request",
        "state",
        "subprotocol",
        "thread_id",
        "turn",
        "upgraded_at",
        "user_id",
    )  # fmt: skip

    def __init__(
        self,
        profile: Profile,
        request: UpgradeRequest,
        *,
        offered: tuple[str, ...] = (),
        expected_subject: str | None = None,
        ack_timeout_s: float | None = None,
        finished: FinishedTurns | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        codec: Codec | None = None,
    ) -> None:
        rules = self._rules = _rules(profile)
        self.profile = profile
        self.request: UpgradeRequest | None = request  # None once the 101 is checked
        self.offered = offered  # the subprotocols the request offers (until the 101)
        self.expected_subject = expected_subject
        self.codec: Codec = codec or rules.codec
        # what the codec answers itself after a read; None for the JSON codec (never any)
        self._replies = None if type(self.codec) is JsonTextCodec else self.codec.replies
        self.state = CONNECTING
        self.subprotocol: str | None = None  # the one the 101 chose
        self.extensions = ""  # the extension the 101 agreed to, with its parameters
        self._data_frame = client_frame  # deflate.frame once permessage-deflate is agreed
        self.upgraded_at: float | None = None
        self.auth_ms: float | None = None
        self.user_id: str | None = None
        self.thread_id: str | None = None  # the user's current thread, for strays
        self.close_code: int | None = None
        self.close_reason = ""
        self.bytes_received = 0
        self.turn: TurnTracker | None = None
        self._ack_timeout_s = rules.ack_timeout_s if ack_timeout_s is None else ack_timeout_s
        self._deadline: float | None = None
        self._error_code: str | None = None
        self._finished = (
            finished if finished is not None else FinishedTurns(profile.events, rules.grammar)
        )
        self._head: HeadReader | None = HeadReader()
        self._parser = FrameParser(max_message_bytes)
        self._outgoing: list[bytes] = []
        self._close_sent = False
        self._floor = float("-inf")
        self._ping_sent_at: float | None = None

    # the upgrade -----------------------------------------------------------------------
    def request_bytes(self) -> bytes:
        """The upgrade request as it goes out (before the 101 only)."""
        assert self.request is not None, "the request is gone once the 101 is checked"
        return self.request.to_bytes()

    def request_sent(self, at: float) -> None:
        """The request went out at ``at``: nothing can have arrived before."""
        self._floor = at

    @property
    def deadline(self) -> float | None:
        """While waiting for the ack: when ``timeout`` gives up on it."""
        return self._deadline if self.state == AWAITING_ACK else None

    @property
    def open(self) -> bool:
        return self.state == OPEN

    # input -----------------------------------------------------------------------------
    def receive_data(self, data: bytes, at: float) -> list[Event]:
        """Bytes one read returned and when they arrived; the events they make."""
        at = self._floor = at if at > self._floor else self._floor
        state = self.state
        if state == OPEN:
            self.bytes_received += len(data)
            return self._frames(data, at, [])
        if state == CONNECTING:
            return self._head_data(data, at)
        if state == AWAITING_ACK:
            self.bytes_received += len(data)
            return self._frames(data, at, [])
        return []

    def receive_eof(self, at: float, reason: str = "connection lost") -> list[Event]:
        """The link is gone (the peer closed it, or it broke) at ``at``."""
        at = self._floor = at if at > self._floor else self._floor
        state = self.state
        if state == CONNECTING:
            self.state = CLOSED
            err = self._head.eof()  # type: ignore[union-attr]
            return [UpgradeFailed(at, err.failure, err.detail, err.status)]
        if state == CLOSED:
            return []
        return self._closed(at, 1006, reason, None, [])

    def timeout(self, now: float) -> list[Event]:
        """The caller's clock says ``now``: the ack may be overdue."""
        if self.state != AWAITING_ACK or self._deadline is None or now < self._deadline:
            return []
        now = now if now > self._floor else self._floor
        detail = f"no ack in {self._ack_timeout_s:g} s"
        self.state = CLOSED
        self.close_code = 1006
        return [self._rejection(now, taxonomy.AUTH_TIMEOUT, detail, None)]

    def abort(self, at: float, reason: str, code: int = 1006) -> None:
        """The caller dropped the link (no close handshake); ``receive_eof`` adds nothing."""
        if self.state != CLOSED:
            self.state = CLOSED
            self.close_code = code
            self.close_reason = reason
            self._floor = at if at > self._floor else self._floor

    # turns -----------------------------------------------------------------------------
    def begin_turn(self, tracker: TurnTracker) -> None:
        """Events from now on are ``tracker``'s turn's (until it is done)."""
        self.turn = tracker

    def end_turn(self) -> None:
        self.turn = None

    # output ----------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """What receiving made due (pongs, a close reply), taken once."""
        if not self._outgoing:
            return b""
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        return data

    def send_text(self, text: str) -> bytes:
        """The frame carrying one application message (already serialised)."""
        return self._data_frame(self.codec.wrap(text).encode("utf-8"))

    def send_message(self, message: Any) -> bytes:
        """The frame carrying one JSON-able message (a refresh, say)."""
        return self._data_frame(self.codec.encode(message).encode("utf-8"))

    def ping(self, at: float) -> bytes:
        """The profile's heartbeat ping, sent at ``at``; its pong comes back as ``Pong``."""
        self._ping_sent_at = at
        return self.send_message(self._rules.ping)

    def cancel_ping(self) -> None:
        """No pong is awaited any more (it timed out)."""
        self._ping_sent_at = None

    def close(self, code: int = 1000) -> bytes:
        """The close frame to start the closing handshake; empty when it is too late."""
        if self._close_sent or self.state == CLOSED:
            return b""
        self._close_sent = True
        return client_frame(struct.pack("!H", code), CLOSE)

    # internals -------------------------------------------------------------------------
    def _head_data(self, data: bytes, at: float) -> list[Event]:
        try:
            complete = self._head.feed(data)  # type: ignore[union-attr]
            if complete is None:
                return []
            head, rest = complete
            request: UpgradeRequest = self.request  # type: ignore[assignment]
            response = check_response(head, request, self.offered)
            agreed = negotiate(request.headers, response.headers.get(EXTENSIONS))
        except HandshakeError as exc:
            self.state = CLOSED
            return [UpgradeFailed(at, exc.failure, exc.detail, exc.status)]
        # handshake-only state goes: an idle session holds no request, token or head
        self.request = self._head = None
        self.offered = ()
        self.subprotocol = response.subprotocol
        if agreed is not None:  # frames are inflated and messages deflated from here on
            self.extensions = agreed.agreed
            self._parser.inflate = agreed.inflate
            self._data_frame = agreed.frame
        self.upgraded_at = at
        out: list[Event] = [Upgraded(at, response)]
        if self._rules.ack_required:
            self.state = AWAITING_ACK
            self._deadline = at + self._ack_timeout_s
        else:
            self.state = OPEN
            self.auth_ms = 0.0
        if self._replies is not None and (replies := self._replies()):
            # the codec speaks first (a Socket.IO probe after a polling open)
            self._outgoing.extend(client_frame(r.encode("utf-8")) for r in replies)
        if rest:  # frames that came in the 101's read arrived when it did
            self.bytes_received += len(rest)
            self._frames(rest, at, out)
        return out

    def _frames(self, data: bytes, at: float, out: list[Event]) -> list[Event]:
        try:
            messages = self._parser.feed(data)
        except FrameError as err:
            self._outgoing.append(self.close(err.close_code))
            if self.state == OPEN:
                out.append(ProtocolError(at, f"closed {err.close_code}: {err.reason}"))
            return self._closed(at, err.close_code, err.reason, err.reason, out)
        for message in messages:
            kind = message.kind
            if self.state == OPEN:
                if kind == "text":
                    self._sort(message.data, at, out)  # type: ignore[arg-type]
                    continue
                if kind == "binary":
                    self._sort_binary(message.data, at, out)  # type: ignore[arg-type]
                    continue
            elif self.state == AWAITING_ACK and (kind == "text" or kind == "binary"):
                self._before_ack(kind, message.data, at, out)
                continue
            elif self.state == CLOSED:
                break
            if kind == "ping":
                self._outgoing.append(client_frame(message.data, PONG))  # type: ignore[arg-type]
            elif kind == "close":
                code, reason = close_payload(message.data)  # type: ignore[arg-type]
                if not self._close_sent:
                    self._close_sent = True
                    self._outgoing.append(client_frame(struct.pack("!H", 1000), CLOSE))
                return self._closed(at, code, reason, None, out)
        if self._replies is not None and (replies := self._replies()):
            # transport-level answers of the codec (an Engine.IO pong, say)
            self._outgoing.extend(self._data_frame(r.encode("utf-8")) for r in replies)
        return out

    def _closed(
        self, at: float, code: int | None, reason: str, violation: str | None, out: list[Event]
    ) -> list[Event]:
        state = self.state
        self.state = CLOSED
        self.close_code = code
        self.close_reason = reason
        if state == AWAITING_ACK:
            rules = self._rules
            error_code = self._error_code
            auth_codes = rules.auth_error_codes
            auth_error = error_code is not None and (not auth_codes or error_code in auth_codes)
            rejected = auth_error or (error_code is None and code in rules.rejection_closes)
            failure = taxonomy.AUTH_REJECTED if rejected else taxonomy.closed(code)
            detail = f"closed {code} {reason!r} before the ack"
            if error_code:
                detail = f"error frame {error_code}, then {detail}"
            out.append(self._rejection(at, failure, detail, code))
            return out
        out.append(Closed(at, code, reason, violation))
        return out

    def _rejection(self, at: float, failure: str, detail: str, code: int | None) -> Rejected:
        auth_ms = (at - self.upgraded_at) * 1000.0 if self.upgraded_at is not None else 0.0
        self.auth_ms = auth_ms
        return Rejected(at, auth_ms, failure, detail, code, self._error_code)

    def _before_ack(self, kind: str, data: Any, at: float, out: list[Event]) -> None:
        """One message while the ack is awaited: the ack, a rejection, or nothing yet."""
        try:
            decoded = (
                self.codec.decode_text(data) if kind == "text" else self.codec.decode_binary(data)
            )
        except CodecError as err:
            if kind != "text":
                return  # binary before the ack decides nothing
            self.state = CLOSED
            self.close_code = 1006
            detail = f"a frame before the ack is {err.detail}"
            out.append(self._rejection(at, taxonomy.PROTOCOL_ERROR, detail, None))
            return
        if decoded is None:
            return
        name, message = decoded
        rules = self._rules
        if matches_any(message, rules.ack_matchers):
            self.state = OPEN
            self.auth_ms = auth_ms = (at - self.upgraded_at) * 1000.0  # type: ignore[operator]
            user_id = get_field(message, rules.user_id_field) if rules.user_id_field else None
            self.user_id = None if user_id is None else str(user_id)
            mismatch = None
            expected = self.expected_subject
            if expected is not None and rules.user_id_field and self.user_id != expected:
                mismatch = f"acked as user {self.user_id!r}, token subject is {expected!r}"
            out.append(Acked(at, auth_ms, self.user_id, message, mismatch))
            return
        if name == rules.connect_error:
            self.state = CLOSED
            self.close_code = 1006
            failure, detail, self._error_code = connect_refusal(self.profile, message)
            out.append(self._rejection(at, failure, detail, None))
            return
        if rules.rejection_field is not None:
            name = message.get(rules.rejection_field)
        if type(name) is str and name in rules.server_errors:
            code = message.get(rules.error_code_field)
            self._error_code = str(code) if code is not None else "error"
            # The close frame that should follow decides nothing new; it gets a short while.
            self._deadline = min(self._deadline or at, at + REJECTION_GRACE_S)

    def _sort_binary(self, data: bytes, at: float, out: list[Event]) -> None:
        try:
            decoded = self.codec.decode_binary(data)
        except CodecError as err:
            out.append(ProtocolError(at, err.detail))
            return
        if decoded is not None:
            self._sort_event(decoded[0], decoded[1], None, at, out)

    def _sort(self, text: str, at: float, out: list[Event]) -> None:
        """One text message of an open session: runs for every event of every turn."""
        try:
            decoded = self.codec.decode_text(text)
        except CodecError as err:
            out.append(ProtocolError(at, f"a text frame that is {err.detail}"))
            return
        if decoded is not None:
            self._sort_event(decoded[0], decoded[1], text, at, out)

    def _sort_event(
        self, name: Any, event: dict[str, Any], raw: str | None, at: float, out: list[Event]
    ) -> None:
        rules = self._rules
        if rules.own_fields and self._own_field(event, at, out):
            return
        if name == rules.pong_name and (sent := self._ping_sent_at) is not None:
            # sent on perf_counter, received on the kernel's clock: no pong before its ping
            self._ping_sent_at = None
            out.append(Pong(at, ((at if at > sent else sent) - sent) * 1000.0))
            return
        if type(name) is not str:
            out.append(ProtocolError(at, f"an event without a string {rules.type_field!r} field"))
            return
        if name in rules.server_error_names:
            code = event.get(rules.error_code_field)
            out.append(ServerError(at, f"{name} {str(code)[:60]}"))
            return
        if name not in rules.known:
            out.append(ProtocolError(at, f"an event of unknown type {name[:40]!r}"))
            return
        # An event of a turn that has ended (even if the next one has begun) is a
        # duplicate: never the current turn's, never a stray.
        repeated = self._finished.duplicate(event, raw)
        if repeated is not None:
            out.append(Duplicate(at, repeated[:200]))
            return
        turn = self.turn
        if turn is not None and not turn.done:
            if turn.feed(event, at, raw):
                self._finished.add(turn)  # here, before the next message is sorted
                out.append(TurnEnded(at, turn))
            return
        self._stray(name, event, at, out)

    def _own_field(self, event: dict[str, Any], at: float, out: list[Event]) -> bool:
        """A pong or an error frame told by a type field other than the events' one."""
        rules = self._rules
        if rules.pong_field is not None and event.get(rules.pong_field) == rules.pong_type:
            sent = self._ping_sent_at
            if sent is not None:  # else a late pong: a heartbeat, nothing to report
                self._ping_sent_at = None
                out.append(Pong(at, ((at if at > sent else sent) - sent) * 1000.0))
            return True
        if rules.rejection_field is not None:
            kind = event.get(rules.rejection_field)
            if type(kind) is str and kind in rules.server_errors:
                code = event.get(rules.error_code_field)
                out.append(ServerError(at, f"{kind} {str(code)[:60]}"))
                return True
        return False

    def _stray(self, name: str, event: dict[str, Any], at: float, out: list[Event]) -> None:
        """An event outside any turn must still be this session's: the isolation check."""
        for field_name, mine in zip(
            self._rules.stray_fields, (self.user_id, self.thread_id), strict=True
        ):
            theirs = event.get(field_name)
            if mine and theirs is not None and str(theirs) != mine:
                out.append(Foreign(at, f"{name} between turns: {field_name} is not ours"))
                return
        if name not in self._rules.heartbeats:
            out.append(Stray(at, name))
