"""The timed WebSocket client: one authenticated session, every phase timed and classified.

I/O lives here and nowhere else in the engine. The upgrade is built and checked by
``handshake`` (sans I/O) and sent over a plain socket, so wsload knows the exact bytes
that went out and times TCP, TLS and upgrade apart; once the server has answered 101 the
socket is handed to websocket-client's ``WebSocket`` for framing. Everything blocks in the
ordinary socket API, so under gevent (as Locust runs it) each session is a greenlet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import ssl
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websocket import ABNF

from wsload import taxonomy
from wsload.config.profile import Profile, get_field
from wsload.errors import ConfigError
from wsload.protocol.carrier import Placement, missing_from
from wsload.protocol.frames import (
    DEFAULT_MAX_MESSAGE_BYTES,
    FrameError,
    FrameParser,
    client_frame,
    close_payload,
    decode_json,
)
from wsload.protocol.upgrade import (
    MAX_HEAD_BYTES,
    Endpoint,
    HandshakeError,
    HttpHead,
    UpgradeRequest,
    build_request,
    check_response,
    find_head_end,
    parse_head,
    parse_ws_url,
)
from wsload.run.records import ConnectionAttempt, Who

_perf = time.perf_counter


@dataclass
class Timings:
    """Phase durations in milliseconds; None for a phase that did not happen."""

    started_at: float  # wall clock (epoch seconds) when the attempt began
    dns_ms: float | None = None
    tcp_ms: float | None = None
    tls_ms: float | None = None
    upgrade_ms: float | None = None
    connect_ms: float | None = None  # TCP connect start to a valid 101 (all of the above)
    auth_ms: float | None = None  # 101 to the ack, or to the rejection


class ConnectError(Exception):
    """A connection that did not become an authenticated session.

    ``failure`` is the taxonomy id, ``phase`` is ``connect`` (before a valid 101) or ``auth``.
    For ``identity_mismatch`` the working session is attached, so a caller may go on.
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
        session: Session | None = None,
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


@dataclass(slots=True)  # not frozen: a frozen init costs three times as much
class Frame:
    """One received message: ``kind`` is text, binary or close.

    A close Frame also stands for a lost connection (1006) and for a protocol violation by
    the server (``violation`` says which; the session is then closed).
    """

    kind: str
    received_at: float  # perf_counter seconds
    text: str | None = None
    data: bytes | None = None
    close_code: int | None = None
    close_reason: str = ""
    violation: str | None = None


class Session:
    """An open, authenticated WebSocket session over a plain (or TLS) socket.

    Frames are read by wsload's own ``FrameParser`` (bounded, many frames per read) and
    written with websocket-client's ``ABNF`` (masking). One greenlet reads; sends from any
    greenlet are serialised by a lock so that a ping never lands inside a chat message.
    """

    def __init__(
        self,
        sock: Any,
        endpoint: Endpoint,
        request: UpgradeRequest,
        *,
        subprotocol: str | None,
        response_headers: dict[str, str],
        set_cookies: tuple[str, ...],
        timings: Timings,
        leftover: bytes = b"",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        kernel_timestamps: bool = False,
        received_at: float | None = None,
    ) -> None:
        self.sock = sock
        self.endpoint = endpoint
        self.request = request
        self.subprotocol = subprotocol
        self.response_headers = response_headers
        self.set_cookies = set_cookies
        self.timings = timings
        self.ack: dict[str, Any] | None = None
        self.user_id: str | None = None
        self.close_code: int | None = None
        self.bytes_received = 0
        self._parser = FrameParser(max_message_bytes)
        self._pending: deque[Frame] = deque()
        self._send_lock = threading.Lock()
        self._close_sent = False
        self._timeout: float | None = -1.0
        # ``kernel_timestamps``: SO_TIMESTAMPNS is already on (``connect`` sets it before the
        # upgrade, so that the 101 and what follows it are stamped by the same clock).
        self.kernel_timestamps = kernel_timestamps
        # No frame is stamped earlier than the one before it, nor than the 101 (``received_at``):
        # converting kernel stamps to perf_counter jitters, and a duration must not go negative.
        self._floor = _perf() if received_at is None else received_at
        if leftover:  # frames that came in the 101's read arrived when it did
            self._take(leftover, self._floor)

    @property
    def open(self) -> bool:
        return self.close_code is None

    # sending ---------------------------------------------------------------------------
    def _send_frame(self, payload: str | bytes, opcode: int) -> None:
        frame = ABNF.create_frame(payload, opcode).format()
        with self._send_lock:
            self.sock.sendall(frame)

    def send_text(self, payload: str) -> int:
        """Send one text message; returns its size in bytes."""
        data = payload.encode("utf-8")
        frame = client_frame(data)
        with self._send_lock:
            # One send takes a chat message whole; gevent's sendall would also ask the
            # kernel for the buffer size on every call. The rest, if any, goes by sendall.
            sent = self.sock.send(frame)
            if sent < len(frame):
                self.sock.sendall(frame[sent:])
        return len(data)

    def send_json(self, message: Any) -> int:
        return self.send_text(json.dumps(message, separators=(",", ":")))

    # receiving -------------------------------------------------------------------------
    def recv(self, timeout: float | None) -> Frame | None:
        """The next message, or None at ``timeout``; a close or lost link is a close Frame."""
        while not self._pending:
            if self.close_code is not None:
                at = not_before(self._floor, _perf())
                return Frame("close", at, close_code=self.close_code, close_reason="closed")
            if timeout != self._timeout:
                self.sock.settimeout(timeout)
                self._timeout = timeout
            try:
                if self.kernel_timestamps:
                    data, ancillary, _, _ = self.sock.recvmsg(65536, _ANCILLARY_SIZE)
                    now = _arrival(ancillary, _perf())
                else:
                    data = self.sock.recv(65536)
                    now = _perf()
            except TimeoutError:
                return None
            except OSError:
                data = b""
                now = _perf()
            now = self._floor = not_before(self._floor, now)
            if not data:
                self.close_code = 1006
                return Frame("close", now, close_code=1006, close_reason="connection lost")
            self._take(data, now)
        return self._pending.popleft()

    def _take(self, data: bytes, now: float) -> None:
        self.bytes_received += len(data)
        try:
            messages = self._parser.feed(data)
        except FrameError as err:
            self._pending.append(
                Frame(
                    "close",
                    now,
                    close_code=err.close_code,
                    close_reason=err.reason,
                    violation=err.reason,
                )
            )
            self._fail(err.close_code)
            return
        for message in messages:
            kind = message.kind
            if kind == "text":
                self._pending.append(Frame("text", now, text=message.data))  # type: ignore[arg-type]
            elif kind == "binary":
                self._pending.append(Frame("binary", now, data=message.data))  # type: ignore[arg-type]
            elif kind == "ping":
                with contextlib.suppress(OSError):
                    self._send_frame(message.data, ABNF.OPCODE_PONG)
            elif kind == "close":
                code, reason = close_payload(message.data)  # type: ignore[arg-type]
                if not self._close_sent:
                    self._close_sent = True
                    with contextlib.suppress(OSError):
                        self._send_frame(struct.pack("!H", 1000), ABNF.OPCODE_CLOSE)
                self.close_code = code
                self._pending.append(Frame("close", now, close_code=code, close_reason=reason))
                return

    def _fail(self, code: int) -> None:
        """Close after a protocol violation: tell the server why, then drop the link."""
        if not self._close_sent:
            self._close_sent = True
            with contextlib.suppress(OSError):
                self._send_frame(struct.pack("!H", code), ABNF.OPCODE_CLOSE)
        self.close_code = code
        self.abort()

    # closing ---------------------------------------------------------------------------
    def close(self, code: int = 1000, timeout: float = 2.0) -> None:
        """Close politely, waiting up to ``timeout`` for the server's close frame."""
        if self.close_code is None and not self._close_sent:
            self._close_sent = True
            try:
                self._send_frame(struct.pack("!H", code), ABNF.OPCODE_CLOSE)
                deadline = _perf() + timeout
                while self.close_code is None and (left := deadline - _perf()) > 0:
                    frame = self.recv(left)
                    if frame is None:
                        break
            except OSError:
                pass
        self.close_code = self.close_code or code
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once, no close handshake."""
        if self.close_code is None:
            self.close_code = 1006
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


# Linux kernel receive timestamps (SO_TIMESTAMPNS): when the segment reached the socket,
# not when this process got round to reading it. Python does not name the constant.
_SO_TIMESTAMPNS = 35
_ANCILLARY_SIZE = socket.CMSG_SPACE(16)


def not_before(floor: float, at: float) -> float:
    """``at``, or ``floor`` when ``at`` is earlier: stamps of one session never go backwards."""
    return at if at > floor else floor


def _enable_kernel_timestamps(sock: Any) -> bool:
    """Ask the kernel to stamp arrivals on ``sock``; False where it cannot (TLS, not Linux)."""
    if not sys.platform.startswith("linux") or isinstance(sock, ssl.SSLSocket):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def _arrival(ancillary: list[tuple[int, int, bytes]], now: float) -> float:
    """The kernel's arrival time of what was just read, on the ``perf_counter`` clock.

    The kernel stamps the wall clock; the offset between the two clocks is read right
    after the read, so only the conversion (well under a microsecond) adds error. When the
    kernel gave no stamp, or one that is not in the past, the read time stands.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            waited = time.time() - (sec + nsec * 1e-9)
            if 0.0 <= waited < 60.0:
                return now - waited
    return now


def _elapsed_ms(start: float, end: float) -> float:
    return (end - start) * 1000.0


def _classify_socket_error(exc: BaseException, timeout_id: str) -> str:
    if isinstance(exc, socket.gaierror):
        return taxonomy.DNS
    if isinstance(exc, TimeoutError | socket.timeout):
        return timeout_id
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return taxonomy.TLS
    if isinstance(exc, ConnectionRefusedError):
        return taxonomy.REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return taxonomy.RESET
    if isinstance(exc, OSError) and exc.errno in (101, 113, 99):  # unreachable, no route
        return taxonomy.UNREACHABLE
    return taxonomy.RESET


def _resolve(endpoint: Endpoint) -> tuple[int, tuple[Any, ...]]:
    try:
        ip = ipaddress.ip_address(endpoint.host)
    except ValueError:
        info = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
        family, _, _, _, address = info[0]
        return family, address
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return family, (endpoint.host, endpoint.port)


def _read_head(sock: Any, kernel: bool = False) -> tuple[bytes, bytes, float]:
    """Read an HTTP head: it, any bytes read past it (frames sent right after), and when the
    read that completed it arrived (perf_counter seconds; the kernel's stamp when ``kernel``).
    """
    buffer = b""
    while True:
        if kernel:
            chunk, ancillary, _, _ = sock.recvmsg(65536, _ANCILLARY_SIZE)
            at = _arrival(ancillary, _perf())
        else:
            chunk = sock.recv(65536)
            at = _perf()
        if not chunk:
            if buffer:
                raise HandshakeError(
                    taxonomy.INVALID_HTTP,
                    f"closed after a partial or non-HTTP answer {buffer[:40]!r}",
                )
            raise ConnectionResetError("connection closed before the server answered")
        buffer += chunk
        end = find_head_end(buffer)
        if end >= 0:
            return buffer[:end], buffer[end:], at
        if len(buffer) > MAX_HEAD_BYTES:
            raise HandshakeError(taxonomy.INVALID_HTTP, "no end of HTTP head in 64 KiB")


def connect(
    url: str,
    profile: Profile,
    placement: Placement,
    *,
    expected_subject: str | None = None,
    options: ClientOptions | None = None,
    on_connected: Callable[[Timings], None] | None = None,
) -> Session:
    """Open a session at ``placement.url`` and wait for the profile's ack.

    Raises ``ConnectError`` with the taxonomy id of whatever went wrong. When
    ``expected_subject`` is given, an ack naming another user is ``identity_mismatch``.
    ``on_connected`` is called once the 101 is validated, before the ack wait.
    """
    opts = options or ClientOptions()
    timings = Timings(started_at=time.time())
    try:
        endpoint = parse_ws_url(placement.url)
    except ValueError as exc:
        raise ConfigError(str(exc), fix="give a URL such as ws://127.0.0.1:8765/ws") from None
    t0 = _perf()
    sock: Any = None
    phase_timeout = taxonomy.TCP_TIMEOUT
    try:
        family, address = _resolve(endpoint)
        t_dns = _perf()
        timings.dns_ms = _elapsed_ms(t0, t_dns)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(opts.connect_timeout_s)
        sock.connect(address)
        t_tcp = _perf()
        timings.tcp_ms = _elapsed_ms(t_dns, t_tcp)
        t_tls = t_tcp
        kernel = False
        if endpoint.secure:
            phase_timeout = taxonomy.TLS
            context = ssl.create_default_context()
            if not opts.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=endpoint.host)
            t_tls = _perf()
            timings.tls_ms = _elapsed_ms(t_tcp, t_tls)
        elif opts.kernel_timestamps:  # before the upgrade: the 101 and the ack share a clock
            kernel = _enable_kernel_timestamps(sock)
        phase_timeout = taxonomy.HANDSHAKE_TIMEOUT
        request = build_request(
            endpoint,
            subprotocols=placement.subprotocols,
            origin=profile.endpoint.origin if opts.origin is None else opts.origin,
            user_agent=profile.endpoint.user_agent if opts.user_agent is None else opts.user_agent,
            cookies=placement.cookies,
            extra_headers=placement.headers,
        )
        sent = request.to_bytes()
        sock.settimeout(opts.handshake_timeout_s)
        sock.sendall(sent)
        head, rest, t_up = _read_head(sock, kernel)
        t_up = not_before(t_tls, t_up)  # the 101 came after the request went out
        response = check_response(head, request, placement.subprotocols)
    except HandshakeError as exc:
        _close_quietly(sock)
        raise ConnectError(
            exc.failure, "connect", exc.detail, timings, http_status=exc.status
        ) from None
    except OSError as exc:
        _close_quietly(sock)
        failure = _classify_socket_error(exc, phase_timeout)
        raise ConnectError(failure, "connect", _describe(exc, endpoint), timings) from None
    timings.upgrade_ms = _elapsed_ms(t_tls, t_up)
    timings.connect_ms = _elapsed_ms(t0, t_up)

    session = Session(
        sock,
        endpoint,
        request,
        subprotocol=response.subprotocol,
        response_headers=response.headers,
        set_cookies=response.set_cookies,
        timings=timings,
        leftover=rest,
        max_message_bytes=opts.max_message_bytes,
        kernel_timestamps=kernel,
        received_at=t_up,
    )
    problem = missing_from(placement, profile.auth, sent)
    if problem is not None:
        session.abort()
        raise ConnectError(taxonomy.AUTH_MATERIAL_MISSING, "connect", problem, timings)
    if on_connected is not None:
        on_connected(timings)
    if not profile.ack.required:
        timings.auth_ms = 0.0
        return session
    _await_ack(session, profile, t_up, opts, expected_subject)
    return session


def _describe(exc: OSError, endpoint: Endpoint) -> str:
    where = f"{endpoint.host}:{endpoint.port}"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing listens at {where} (connection refused)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} in time"
    return f"{type(exc).__name__}: {exc} ({where})"


def _close_quietly(sock: Any) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def matches_any(frame: dict[str, Any], matchers: tuple[dict[str, Any], ...]) -> bool:
    """Whether every field of at least one matcher equals the frame's value there."""
    return any(all(get_field(frame, k) == v for k, v in m.items()) for m in matchers)


def _await_ack(
    session: Session,
    profile: Profile,
    t_up: float,
    opts: ClientOptions,
    expected_subject: str | None,
) -> None:
    timings = session.timings
    ack_timeout = opts.ack_timeout_s if opts.ack_timeout_s is not None else profile.ack.timeout_s
    deadline = t_up + ack_timeout
    error_code: str | None = None
    rejection = profile.rejection

    def fail(failure: str, detail: str, at: float, **extra: Any) -> ConnectError:
        timings.auth_ms = _elapsed_ms(t_up, at)
        session.abort()
        return ConnectError(failure, "auth", detail, timings, error_code=error_code, **extra)

    while True:
        remaining = deadline - _perf()
        if remaining <= 0:
            raise fail(taxonomy.AUTH_TIMEOUT, f"no ack in {ack_timeout:g} s", _perf())
        frame = session.recv(remaining)
        if frame is None:
            continue
        if frame.kind == "close":
            code = frame.close_code
            auth_codes = rejection.auth_error_codes
            auth_error = error_code is not None and (not auth_codes or error_code in auth_codes)
            rejected = auth_error or (error_code is None and code in rejection.close_codes)
            failure = taxonomy.AUTH_REJECTED if rejected else taxonomy.closed(code)
            detail = f"closed {code} {frame.close_reason!r} before the ack"
            if error_code:
                detail = f"error frame {error_code}, then {detail}"
            raise fail(failure, detail, frame.received_at, close_code=code)
        if frame.kind != "text":
            continue
        try:
            message = decode_json(frame.text or "")
        except ValueError:
            raise fail(
                taxonomy.PROTOCOL_ERROR, "a frame before the ack is not JSON", frame.received_at
            ) from None
        if not isinstance(message, dict):
            raise fail(
                taxonomy.PROTOCOL_ERROR,
                "a frame before the ack is not an object",
                frame.received_at,
            )
        if matches_any(message, profile.ack.match):
            timings.auth_ms = _elapsed_ms(t_up, frame.received_at)
            session.ack = message
            user_id = get_field(message, profile.ack.user_id_field)
            session.user_id = None if user_id is None else str(user_id)
            if expected_subject is not None and session.user_id != expected_subject:
                raise ConnectError(
                    taxonomy.IDENTITY_MISMATCH,
                    "auth",
                    f"acked as user {session.user_id!r}, token subject is {expected_subject!r}",
                    timings,
                    session=session,
                )
            return
        if message.get(profile.events.type_field) in rejection.error_types:
            code = message.get(rejection.error_code_field)
            error_code = str(code) if code is not None else "error"
            # The close frame that should follow decides nothing new; wait briefly for it.
            deadline = min(deadline, _perf() + 1.0)


def exchange_head(url: str, request: bytes, timeout: float) -> tuple[int, HttpHead]:
    """Send raw request bytes and read the answer's head: for probes that break the rules."""
    timings = Timings(started_at=time.time())
    endpoint = parse_ws_url(url)
    sock: Any = None
    try:
        family, address = _resolve(endpoint)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        if endpoint.secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=endpoint.host)
        sock.sendall(request)
        head, _, _ = _read_head(sock)
        parsed = parse_head(head)
        status_text = parsed.start[1]
        if not (parsed.start[0].startswith("HTTP/") and status_text.isdigit()):
            raise HandshakeError(taxonomy.INVALID_HTTP, "not an HTTP answer")
        return int(status_text), parsed
    except HandshakeError as exc:
        raise ConnectError(exc.failure, "connect", exc.detail, timings) from None
    except OSError as exc:
        failure = _classify_socket_error(exc, taxonomy.HANDSHAKE_TIMEOUT)
        raise ConnectError(failure, "connect", _describe(exc, endpoint), timings) from None
    finally:
        _close_quietly(sock)


def preflight(url: str, timeout: float = 3.0) -> None:
    """Fail early, with the fix, when nothing listens at ``url``."""
    try:
        endpoint = parse_ws_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc), fix="give a URL such as ws://127.0.0.1:8765/ws") from None
    try:
        family, address = _resolve(endpoint)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot resolve the host of {url}: {exc.strerror or exc}",
            fix="check the host name in --host",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"nothing listens at {url} ({type(exc).__name__})",
            fix="start the server under test, or run `wsload target` for the reference target "
            "(with no --host the locustfile starts one itself)",
        ) from None


def attempt_record(
    outcome: Session | ConnectError, who: Who, inflight: int
) -> tuple[ConnectionAttempt, Session | None]:
    """The record of one connection attempt, and the session to go on with (the new one,
    the one an ``identity_mismatch`` left working, or None)."""
    t = outcome.timings
    phases = dict(tcp_ms=t.tcp_ms, tls_ms=t.tls_ms, upgrade_ms=t.upgrade_ms)
    if isinstance(outcome, Session):
        record = ConnectionAttempt(
            t.started_at, who, inflight, t.connect_ms or 0.0, t.auth_ms or 0.0, **phases
        )
        return record, outcome
    connect_ms = t.connect_ms
    if outcome.phase == "connect":
        connect_ms = (time.time() - t.started_at) * 1000.0  # until it failed
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
        **phases,
    )
    return record, outcome.session
