"""The HTTP/1.1 upgrade of RFC 6455, sans I/O: bytes to send, bytes received, verdicts.

wsload builds and checks the handshake itself instead of leaving it to a client library:
it knows exactly which bytes went out (so it can prove the auth material was sent), reads
the answer in one or two ``recv`` calls instead of one byte at a time, keeps cookies per
user instead of in a process-wide jar, and turns every way the answer can be wrong into one
taxonomy id.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from wsload import taxonomy

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES = 64 * 1024


class HandshakeError(Exception):
    """The upgrade failed; ``failure`` is its taxonomy id."""

    def __init__(self, failure: str, detail: str, *, status: int | None = None) -> None:
        self.failure = failure
        self.detail = detail
        self.status = status
        super().__init__(f"{failure}: {detail}")


@dataclass(frozen=True)
class Endpoint:
    """Where a ``ws://`` or ``wss://`` URL points."""

    secure: bool
    host: str
    port: int
    resource: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


@functools.lru_cache(maxsize=64)
def parse_ws_url(url: str) -> Endpoint:
    """Split a WebSocket URL; ``ValueError`` names what is wrong with it.

    Cached (an ``Endpoint`` is frozen): every session of a run shares its URL's one.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    try:
        port = parts.port or (443 if scheme == "wss" else 80)
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return Endpoint(scheme == "wss", parts.hostname, port, resource)


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


@dataclass(frozen=True)
class UpgradeRequest:
    """One upgrade request, headers in the order they are sent."""

    endpoint: Endpoint
    key: str
    headers: tuple[tuple[str, str], ...]

    def to_bytes(self) -> bytes:
        lines = [f"GET {self.endpoint.resource} HTTP/1.1"]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def build_request(
    endpoint: Endpoint,
    *,
    subprotocols: tuple[str, ...] = (),
    origin: str | None = None,
    user_agent: str | None = None,
    cookies: tuple[tuple[str, str], ...] = (),
    extra_headers: tuple[tuple[str, str], ...] = (),
    key: str | None = None,
    extensions: str | None = None,
) -> UpgradeRequest:
    """The request a browser would send, in a browser's header order (Chromium's: the
    extensions offer between the key and the subprotocols)."""
    key = key or new_key()
    headers: list[tuple[str, str]] = [
        ("Host", endpoint.host_header),
        ("Connection", "Upgrade"),
        ("Pragma", "no-cache"),
        ("Cache-Control", "no-cache"),
    ]
    if user_agent:
        headers.append(("User-Agent", user_agent))
    headers.append(("Upgrade", "websocket"))
    if origin:
        headers.append(("Origin", origin))
    headers.append(("Sec-WebSocket-Version", "13"))
    if cookies:
        headers.append(("Cookie", "; ".join(f"{n}={v}" for n, v in cookies)))
    headers.append(("Sec-WebSocket-Key", key))
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    if subprotocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    headers.extend(extra_headers)
    return UpgradeRequest(endpoint, key, tuple(headers))


@dataclass(frozen=True)
class HttpHead:
    """A parsed HTTP head: the start line split in three, headers with lower-case names."""

    start: tuple[str, str, str]
    headers: dict[str, str] = field(default_factory=dict)
    set_cookies: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def find_head_end(buffer: bytes) -> int:
    """Length of the head (through the blank line) in ``buffer``, or -1 if incomplete."""
    end = buffer.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


class HeadReader:
    """Collects received bytes until an HTTP head is complete, sans I/O.

    ``feed`` returns the head and whatever came after it in the same reads (frames a server
    sends right behind its 101), or None while the head is incomplete; ``HandshakeError``
    when no head can come (over 64 KiB, or the peer closed part-way).
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[bytes, bytes] | None:
        buffer = self._buffer = self._buffer + data
        end = find_head_end(buffer)
        if end >= 0:
            self._buffer = b""
            return buffer[:end], buffer[end:]
        if len(buffer) > MAX_HEAD_BYTES:
            raise HandshakeError(taxonomy.INVALID_HTTP, "no end of HTTP head in 64 KiB")
        return None

    def eof(self) -> HandshakeError:
        """Why the head never came, now that the peer has closed."""
        if self._buffer:
            return HandshakeError(
                taxonomy.INVALID_HTTP,
                f"closed after a partial or non-HTTP answer {self._buffer[:40]!r}",
            )
        return HandshakeError(taxonomy.RESET, "connection closed before the server answered")


def parse_head(data: bytes) -> HttpHead:
    """Parse an HTTP/1.1 request or response head; ``HandshakeError`` when it is not one."""
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise HandshakeError(taxonomy.INVALID_HTTP, "head is not text") from None
    lines = text.split("\r\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise HandshakeError(taxonomy.INVALID_HTTP, "empty answer")
    start = lines[0].split(" ", 2)
    if len(start) < 2:
        raise HandshakeError(taxonomy.INVALID_HTTP, f"not an HTTP start line: {_snip(lines[0])}")
    headers: dict[str, str] = {}
    set_cookies: list[str] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HandshakeError(taxonomy.INVALID_HTTP, f"malformed header line: {_snip(line)}")
        key, value = name.lower(), value.strip()
        if key == "set-cookie":
            set_cookies.append(value)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpHead(
        (start[0], start[1], start[2] if len(start) > 2 else ""), headers, tuple(set_cookies)
    )


def _snip(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass(frozen=True)
class UpgradeResponse:
    """A validated 101 answer."""

    status: int
    headers: dict[str, str]
    subprotocol: str | None
    set_cookies: tuple[str, ...]


def check_response(
    head_bytes: bytes, request: UpgradeRequest, offered: tuple[str, ...]
) -> UpgradeResponse:
    """Validate a response head against the request; raise ``HandshakeError`` with its id."""
    head = parse_head(head_bytes)
    version, status_text, reason = head.start
    if not version.startswith("HTTP/"):
        raise HandshakeError(taxonomy.INVALID_HTTP, f"not an HTTP answer: {_snip(version)}")
    if not (len(status_text) == 3 and status_text.isdigit()):
        raise HandshakeError(taxonomy.INVALID_HTTP, f"bad status code {_snip(status_text)}")
    status = int(status_text)
    if status != 101:
        raise HandshakeError(
            taxonomy.http_status(status), f"HTTP {status} {reason}".strip(), status=status
        )
    if "websocket" not in _tokens(head.header("upgrade")):
        raise HandshakeError(taxonomy.INVALID_HTTP, "101 without 'Upgrade: websocket'", status=101)
    if "upgrade" not in _tokens(head.header("connection")):
        raise HandshakeError(taxonomy.INVALID_HTTP, "101 without 'Connection: Upgrade'", status=101)
    accept = head.header("sec-websocket-accept")
    if accept != accept_for(request.key):
        raise HandshakeError(
            taxonomy.INVALID_HTTP,
            "missing Sec-WebSocket-Accept" if accept is None else "wrong Sec-WebSocket-Accept",
            status=101,
        )
    chosen = head.header("sec-websocket-protocol")
    if chosen is not None and chosen not in offered:
        raise HandshakeError(
            taxonomy.INVALID_HTTP,
            f"server chose subprotocol {_snip(chosen)} that was not offered",
            status=101,
        )
    return UpgradeResponse(status, head.headers, chosen, head.set_cookies)


def _tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",")}
