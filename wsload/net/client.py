"""The timed WebSocket client: the gevent adapter of ``ClientSession``, and nothing more.

Everything the protocol decides (the 101, the ack or the rejection, control frames, close,
the sorting of each message) lives in the sans-I/O ``wsload.protocol.session``; this module
does the I/O around it: resolve, TCP (and TLS), send the upgrade the session built, read
with the kernel's receive times, feed the session, send what it asks, and hand its events
to the caller. TCP, TLS and upgrade are timed apart here, where the socket calls are. All
calls block in the ordinary socket API, so under gevent (as Locust runs it) each
connection is a greenlet.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsload import taxonomy
from wsload.config.profile import Profile
from wsload.errors import ConfigError
from wsload.net import tls
from wsload.net.sockets import (
    ANCILLARY_SIZE,
    READ_SIZE,
    arrival,
    classify_socket_error,
    close_quietly,
    describe,
    enable_kernel_timestamps,
    kernel_connect_ms,
    read_stamped,
    resolve,
)
from wsload.net.source_ips import SourcePicker
from wsload.protocol.carrier import Placement, missing_from
from wsload.protocol.deflate import offer
from wsload.protocol.events import Acked, Closed, Event, Rejected, UpgradeFailed
from wsload.protocol.frames import DEFAULT_MAX_MESSAGE_BYTES, payload_size
from wsload.protocol.session import AWAITING_ACK, CLOSED, OPEN, ClientSession
from wsload.protocol.tracker import FinishedTurns
from wsload.protocol.upgrade import (
    Endpoint,
    build_request,
    parse_ws_url,
)
from wsload.run.records import ConnectionAttempt, Who

_perf = time.perf_counter


@dataclass(slots=True)
class Timings:
    """Phase durations in milliseconds; None for a phase that did not happen."""

    started_at: float  # wall clock (epoch seconds) when the attempt began
    dns_ms: float | None = None
    tcp_ms: float | None = None  # SYN to SYN-ACK as the kernel timed it, where it did
    tls_ms: float | None = None
    upgrade_ms: float | None = None  # upgrade request sent to the 101's arrival
    connect_ms: float | None = None  # a valid 101: the sum of the phases above
    auth_ms: float | None = None  # 101 to the ack, or to the rejection
    tls_resumed: bool | None = None  # wss://: whether the TLS session was resumed


class ConnectError(Exception):
    """A connection that did not become an authenticated session.

    ``failure`` is the taxonomy id, ``phase`` is ``connect`` (before a valid 101) or ``auth``.
    For ``identity_mismatch`` the working connection is attached, so a caller may go on.
    """

    def __init__(
        self,
        failure: str,
        phase: str,
        detail: str,
        timings: Timings,
        *,
        http_status: int | None = None,
        close_code: int | None = None,
        error_code: str | None = None,
        session: Connection | None = None,
    ) -> None:
        self.failure = failure
        self.phase = phase
        self.detail = detail
        self.timings = timings
        self.http_status = http_status
        self.close_code = close_code
        self.error_code = error_code
        self.session = session
        super().__init__(f"{failure} ({phase}): {detail}")


@dataclass(frozen=True)
class ClientOptions:
    """Timeouts and browser-likeness of one connection attempt."""

    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    ack_timeout_s: float | None = None  # None: the profile's
    origin: str | None = None  # None: the profile's; "" sends none
    user_agent: str | None = None  # None: the profile's; "" sends none
    tls_verify: bool = True
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # what a server may make us hold
    kernel_timestamps: bool = True  # receive times from the kernel where it gives them
    source: SourcePicker | None = None  # local addresses to connect from (--source-ips)
    compression: str | None = None  # None: the profile's; browser | off (permessage-deflate)
    tls: tls.TlsSettings = tls.DEFAULT_TLS  # wss://: CA, client certificate, --tls-insecure

    @property
    def tls_settings(self) -> tls.TlsSettings:
        """The TLS settings, with ``tls_verify=False`` as ``insecure``."""
        if self.tls_verify or self.tls.insecure:
            return self.tls
        return tls.TlsSettings(self.tls.ca_file, True, self.tls.client_cert, self.tls.client_key)


class Connection:
    """An open WebSocket connection: a socket and the ``ClientSession`` it feeds.

    One greenlet reads (``receive``); sends from any greenlet are serialised by a lock so
    that a ping never lands inside a chat message. The session is ``session``: begin and
    end turns there, read its state there. Slotted: thousands are held at once.
    """

    __slots__ = (
        "_send_lock", "_timeout", "endpoint", "kernel_timestamps", "pending", "session", "sock",
        "timings",
    )  # fmt: skip

    def __init__(
        self,
        sock: Any,
        session: ClientSession,
        endpoint: Endpoint,
        timings: Timings,
        *,
        kernel_timestamps: bool = False,
    ) -> None:
        self.sock = sock
        self.session = session
        self.endpoint = endpoint
        self.timings = timings
        # SO_TIMESTAMPNS is already on (``connect`` sets it before the upgrade, so that the
        # 101 and what follows it are stamped by the same clock).
        self.kernel_timestamps = kernel_timestamps
        self.pending: list[Event] | tuple[()] = ()  # events read with the ack, not yet taken
        self._send_lock = threading.Lock()
        self._timeout: float | None = -1.0

    # what the session knows --------------------------------------------------------------
    @property
    def open(self) -> bool:
        return self.session.state == OPEN

    @property
    def user_id(self) -> str | None:
        return self.session.user_id

    @property
    def close_code(self) -> int | None:
        return self.session.close_code

    @property
    def subprotocol(self) -> str | None:
        return self.session.subprotocol

    # sending ---------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        with self._send_lock:
            # One send takes a chat message whole; gevent's sendall would also ask the
            # kernel for the buffer size on every call. The rest, if any, goes by sendall.
            sent = self.sock.send(data)
            if sent < len(data):
                self.sock.sendall(data[sent:])

    def send_text(self, payload: str) -> int:
        """Send one application message; returns its size in bytes."""
        frame = self.session.send_text(payload)
        self._send(frame)
        return payload_size(frame)

    def send_message(self, message: Any) -> None:
        """Send one JSON-able message (a refresh, say)."""
        self._send(self.session.send_message(message))

    def ping(self) -> None:
        """Send the profile's heartbeat ping now; its pong is a ``Pong`` event."""
        self._send(self.session.ping(_perf()))

    # receiving -------------------------------------------------------------------------
    def receive(self, timeout: float | None) -> list[Event] | None:
        """The events of the next read (never empty), or None at ``timeout``.

        A closed connection gives a ``Closed`` event, every time it is asked.
        """
        if self.pending:
            events, self.pending = self.pending, ()
            return events  # type: ignore[return-value]
        session = self.session
        sock = self.sock
        while True:
            if session.state == CLOSED:
                at = _perf()
                return [Closed(at, session.close_code, session.close_reason or "closed")]
            if timeout != self._timeout:
                sock.settimeout(timeout)
                self._timeout = timeout
            try:
                if self.kernel_timestamps:
                    data, ancillary, _, _ = sock.recvmsg(READ_SIZE, ANCILLARY_SIZE)
                    now = arrival(ancillary, _perf())
                else:
                    data = sock.recv(READ_SIZE)
                    now = _perf()
            except TimeoutError:
                return None
            except OSError:
                data = b""
                now = _perf()
            events = session.receive_data(data, now) if data else session.receive_eof(now)
            reply = session.data_to_send()
            if reply:
                with contextlib.suppress(OSError):
                    self._send(reply)
            if session.state == CLOSED:
                self._drop()
            if events:
                return events

    # closing ---------------------------------------------------------------------------
    def close(self, code: int = 1000, timeout: float = 2.0) -> None:
        """Close politely, waiting up to ``timeout`` for the server's close frame."""
        frame = self.session.close(code)
        if frame:
            try:
                self._send(frame)
                deadline = _perf() + timeout
                while self.session.state != CLOSED and (left := deadline - _perf()) > 0:
                    if self.receive(left) is None:
                        break
            except OSError:
                pass
        self.abort("closed", code)

    def abort(self, reason: str = "aborted", code: int = 1006) -> None:
        """Drop the connection at once, no close handshake; a reader sees ``Closed``."""
        self.session.abort(_perf(), reason, code)
        self._drop()

    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


def not_before(floor: float, at: float) -> float:
    """``at``, or ``floor`` when ``at`` is earlier: stamps of one session never go backwards."""
    return at if at > floor else floor


def _elapsed_ms(start: float, end: float) -> float:
    return (end - start) * 1000.0


def connect(
    url: str,
    profile: Profile,
    placement: Placement,
    *,
    expected_subject: str | None = None,
    options: ClientOptions | None = None,
    on_connected: Callable[[Timings], None] | None = None,
    finished: FinishedTurns | None = None,
    tls_resume: tls.TlsResume | None = None,
) -> Connection:
    """Open a connection at ``placement.url`` and wait for the profile's ack.

    Raises ``ConnectError`` with the taxonomy id of whatever went wrong. When
    ``expected_subject`` is given, an ack naming another user is ``identity_mismatch``.
    ``on_connected`` is called once the 101 is validated, before the ack wait. ``finished``
    is the user's memory of ended turns, kept across its sessions (duplicates);
    ``tls_resume`` its TLS session, offered again on its next ``wss://`` connection.
    """
    opts = options or ClientOptions()
    timings = Timings(started_at=time.time())
    try:
        endpoint = parse_ws_url(placement.url)
    except ValueError as exc:
        raise ConfigError(str(exc), fix="give a URL such as ws://127.0.0.1:8765/ws") from None
    t0 = _perf()
    origin = profile.endpoint.origin if opts.origin is None else opts.origin
    user_agent = profile.endpoint.user_agent if opts.user_agent is None else opts.user_agent
    codec, cookies = None, placement.cookies
    if profile.transport.framing == "socketio":  # Engine.IO's URL, maybe a polling open first
        from wsload.net.engineio import PollingOpenError, socketio_codec  # only for Socket.IO

        try:
            codec, url, cookies = socketio_codec(
                profile,
                placement,
                subject=expected_subject or "",
                timeout_s=opts.handshake_timeout_s,
                origin=origin,
                user_agent=user_agent,
                tls_verify=opts.tls_verify,
            )
        except PollingOpenError as err:
            raise ConnectError(
                err.failure, "connect", err.detail, timings, http_status=err.status
            ) from None
        endpoint = parse_ws_url(url)
    sock: Any = None
    phase_timeout = taxonomy.TCP_TIMEOUT
    try:
        family, address = resolve(endpoint)
        t_dns = _perf()
        timings.dns_ms = _elapsed_ms(t0, t_dns)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if opts.source is not None:
            opts.source.bind(sock)
        sock.settimeout(opts.connect_timeout_s)
        sock.connect(address)
        t_tcp = _perf()
        timings.tcp_ms = kernel_connect_ms(sock) or _elapsed_ms(t_dns, t_tcp)
        kernel = False
        if endpoint.secure:
            phase_timeout = taxonomy.TLS
            sock = tls.handshake(sock, endpoint, opts.tls_settings, tls_resume)
            timings.tls_ms = _elapsed_ms(t_tcp, _perf())
        elif opts.kernel_timestamps:  # before the upgrade: the 101 and the ack share a clock
            kernel = enable_kernel_timestamps(sock)
        phase_timeout = taxonomy.HANDSHAKE_TIMEOUT
        request = build_request(
            endpoint,
            subprotocols=placement.subprotocols,
            origin=origin,
            user_agent=user_agent,
            cookies=cookies,
            extra_headers=placement.headers,
            extensions=offer(opts.compression or profile.endpoint.compression),
        )
        session = ClientSession(
            profile,
            request,
            offered=placement.subprotocols,
            expected_subject=expected_subject,
            ack_timeout_s=opts.ack_timeout_s,
            finished=finished,
            max_message_bytes=opts.max_message_bytes,
            codec=codec,
        )
        sent = session.request_bytes()
        sock.settimeout(opts.handshake_timeout_s)
        t_sent = _perf()
        session.request_sent(t_sent)  # the 101 came after the request went out
        sock.sendall(sent)
        events: list[Event] = []
        while not events:
            data, at = read_stamped(sock, kernel)
            events = session.receive_data(data, at) if data else session.receive_eof(_perf())
    except OSError as exc:
        close_quietly(sock)
        failure = classify_socket_error(exc, phase_timeout)
        detail = (tls.describe_failure if failure == taxonomy.TLS else describe)(exc, endpoint)
        raise ConnectError(failure, "connect", detail, timings) from None
    upgrade = events[0]
    if type(upgrade) is UpgradeFailed:
        close_quietly(sock)
        failure, detail = upgrade.failure, upgrade.detail
        if failure == taxonomy.RESET and endpoint.secure:  # what an mTLS refusal looks like
            failure, detail = taxonomy.TLS, tls.closed_after_handshake(endpoint)
        elif failure == taxonomy.RESET:
            detail = f"{detail} ({endpoint.host}:{endpoint.port})"
        raise ConnectError(failure, "connect", detail, timings, http_status=upgrade.status)
    t_up = upgrade.at
    if endpoint.secure:
        timings.tls_resumed = sock.session_reused
        if tls_resume is not None:
            tls_resume.remember(sock, endpoint)
    timings.upgrade_ms = _elapsed_ms(t_sent, t_up)
    # the sum of the phases: the generator's own time between them (building the request,
    # waking to see the connect done) is not the server's
    timings.connect_ms = timings.dns_ms + timings.tcp_ms + (timings.tls_ms or 0.0)
    timings.connect_ms += timings.upgrade_ms
    conn = Connection(sock, session, endpoint, timings, kernel_timestamps=kernel)
    problem = missing_from(placement, profile.auth, sent)
    if problem is not None:
        conn.abort()
        raise ConnectError(taxonomy.AUTH_MATERIAL_MISSING, "connect", problem, timings)
    if on_connected is not None:
        on_connected(timings)
    due = session.data_to_send()  # what the codec says first (a Socket.IO CONNECT, a probe)
    if due:
        try:
            conn._send(due)
        except OSError as exc:
            conn.abort()
            raise ConnectError(taxonomy.RESET, "auth", describe(exc, endpoint), timings) from None
    _await_ack(conn, events[1:])
    return conn


def _await_ack(conn: Connection, events: list[Event]) -> None:
    """Take events until the session is acked (or needs no ack); raise on a rejection."""
    session = conn.session
    timings = conn.timings
    while True:
        for index, event in enumerate(events):
            kind = type(event)
            if kind is Acked:
                timings.auth_ms = event.auth_ms
                conn.pending = events[index + 1 :] or ()
                if event.mismatch is not None:
                    raise ConnectError(
                        taxonomy.IDENTITY_MISMATCH, "auth", event.mismatch, timings, session=conn
                    )
                return
            if kind is Rejected:
                timings.auth_ms = event.auth_ms
                conn.abort()
                raise ConnectError(
                    event.failure,
                    "auth",
                    event.detail,
                    timings,
                    close_code=event.close_code,
                    error_code=event.error_code,
                )
        if session.state != AWAITING_ACK:  # no ack required: open since the 101
            timings.auth_ms = session.auth_ms
            conn.pending = events or ()
            return
        remaining = (session.deadline or 0.0) - _perf()
        if remaining <= 0:
            events = session.timeout(_perf())
            continue
        events = conn.receive(remaining) or []


def attempt_record(
    outcome: Connection | ConnectError, who: Who, inflight: int
) -> tuple[ConnectionAttempt, Connection | None]:
    """The record of one connection attempt, and the session to go on with (the new one,
    the one an ``identity_mismatch`` left working, or None)."""
    t = outcome.timings
    phases = dict(
        tcp_ms=t.tcp_ms, tls_ms=t.tls_ms, upgrade_ms=t.upgrade_ms, tls_resumed=t.tls_resumed
    )
    if isinstance(outcome, Connection):
        record = ConnectionAttempt(
            t.started_at,
            who,
            inflight,
            t.connect_ms or 0.0,
            t.auth_ms or 0.0,
            extensions=outcome.session.extensions,
            **phases,
        )
        return record, outcome
    connect_ms = t.connect_ms
    if outcome.phase == "connect":
        connect_ms = (time.time() - t.started_at) * 1000.0  # until it failed
    session = outcome.session
    record = ConnectionAttempt(
        t.started_at,
        who,
        inflight,
        connect_ms or 0.0,
        t.auth_ms or 0.0,
        failure=outcome.failure,
        phase=outcome.phase,
        detail=outcome.detail,
        http_status=outcome.http_status,
        close_code=outcome.close_code,
        extensions=session.session.extensions if session is not None else "",
        **phases,
    )
    return record, session
