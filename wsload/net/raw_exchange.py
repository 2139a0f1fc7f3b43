"""Socket exchanges outside a WebSocket session: the preflight and a probe's raw request.

Before any load, ``preflight`` tells "nothing listens" and TLS failures apart with the fix;
a handshake-conformance probe sends request bytes that break the rules on purpose and
reads the answer's head (``exchange_head``). Both use the timed client's resolve, TLS and
error naming, and nothing of its session.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from wsload import taxonomy
from wsload.errors import ConfigError
from wsload.net import tls
from wsload.net.client import ConnectError, Timings
from wsload.net.sockets import READ_SIZE, classify_socket_error, close_quietly, describe, resolve
from wsload.protocol.upgrade import HandshakeError, HeadReader, HttpHead, parse_head, parse_ws_url


def exchange_head(
    url: str, request: bytes, timeout: float, tls_settings: tls.TlsSettings | None = None
) -> tuple[int, HttpHead]:
    """Send raw request bytes and read the answer's head: for probes that break the rules."""
    timings = Timings(started_at=time.time())
    endpoint = parse_ws_url(url)
    sock: Any = None
    try:
        family, address = resolve(endpoint)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        if endpoint.secure:
            sock = tls.handshake(sock, endpoint, tls_settings or tls.DEFAULT_TLS, None)
        sock.sendall(request)
        reader = HeadReader()
        complete = None
        while complete is None:
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                raise reader.eof()
            complete = reader.feed(chunk)
        head = complete[0]
        parsed = parse_head(head)
        status_text = parsed.start[1]
        if not (parsed.start[0].startswith("HTTP/") and status_text.isdigit()):
            raise HandshakeError(taxonomy.INVALID_HTTP, "not an HTTP answer")
        return int(status_text), parsed
    except HandshakeError as exc:
        raise ConnectError(exc.failure, "connect", exc.detail, timings) from None
    except OSError as exc:
        failure = classify_socket_error(exc, taxonomy.HANDSHAKE_TIMEOUT)
        raise ConnectError(failure, "connect", describe(exc, endpoint), timings) from None
    finally:
        close_quietly(sock)


def preflight(url: str, timeout: float = 3.0, tls_settings: tls.TlsSettings | None = None) -> None:
    """Fail early, with the fix, when nothing listens at ``url`` or its TLS fails."""
    try:
        endpoint = parse_ws_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc), fix="give a URL such as ws://127.0.0.1:8765/ws") from None
    try:
        family, address = resolve(endpoint)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            if endpoint.secure:
                try:
                    tls.handshake(sock, endpoint, tls_settings or tls.DEFAULT_TLS, None).close()
                except (ssl.SSLError, ssl.CertificateError) as exc:
                    raise tls.preflight_error(exc, url, endpoint) from None
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
