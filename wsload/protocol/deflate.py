"""permessage-deflate (RFC 7692) as a browser negotiates it, sans I/O.

Chromium offers ``permessage-deflate; client_max_window_bits`` on every WebSocket, and a
server that accepts it compresses what it sends (and expects the same back): each such
session costs the server compression CPU and a zlib context. wsload offers the same, and
leaves the compression itself to the ``websockets`` package's maintained implementation
(negotiation by RFC 7692's rules, context takeover, window bits, the zip-bomb bound): this
module only connects it to wsload's frame parser and frame builder.
"""

from __future__ import annotations

from websockets.exceptions import InvalidHandshake, PayloadTooBig, ProtocolError
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import Frame, Opcode
from websockets.headers import parse_extension

from wsload import taxonomy
from wsload.protocol.frames import RSV1, TEXT, FrameError, client_frame
from wsload.protocol.upgrade import HandshakeError

EXTENSIONS_HEADER = "Sec-WebSocket-Extensions"
#: what Chromium sends, byte for byte (no window limit asked of the server, none imposed)
CHROMIUM_OFFER = "permessage-deflate; client_max_window_bits"
COMPRESSION_MODES = ("browser", "off")
# the websockets client's own choice: a quarter of zlib's default hash memory per session
# (what the server negotiates and pays is unchanged; thousands of idle sessions are held)
COMPRESS_SETTINGS = {"memLevel": 5}


def offer(compression: str) -> str | None:
    """The ``Sec-WebSocket-Extensions`` a request carries for ``--compression`` (None: off)."""
    return CHROMIUM_OFFER if compression == "browser" else None


def offered(headers: tuple[tuple[str, str], ...]) -> bool:
    """Whether a request's headers offer permessage-deflate."""
    return any(
        name.lower() == "sec-websocket-extensions" and "permessage-deflate" in value
        for name, value in headers
    )


class Deflate:
    """One session's negotiated permessage-deflate: inflate what arrives, deflate what
    goes out, with the parameters the server's answer set (``agreed`` says them)."""

    __slots__ = ("_ext", "agreed")

    def __init__(self, extension: PerMessageDeflate, agreed: str) -> None:
        self._ext = extension
        self.agreed = agreed

    def inflate(self, payload: bytes, opcode: int, max_size: int) -> bytes:
        """The payload of one whole compressed message (``FrameError`` when it is broken
        or inflates past ``max_size``: a 1009 or 1007 close, as for any frame)."""
        frame = Frame(Opcode(opcode), payload, fin=True, rsv1=True)
        try:
            return bytes(self._ext.decode(frame, max_size=max_size).data)
        except PayloadTooBig:
            raise FrameError(f"a message inflating past {max_size} bytes", 1009) from None
        except ProtocolError as exc:
            raise FrameError(f"permessage-deflate: {exc}", 1007) from None

    def frame(self, payload: bytes, opcode: int = TEXT) -> bytes:
        """The masked client frame carrying one message, compressed (RSV1 set)."""
        data = self._ext.encode(Frame(Opcode(opcode), payload, fin=True)).data
        return client_frame(bytes(data), opcode | RSV1)


def negotiate(request_headers: tuple[tuple[str, str], ...], answer: str | None) -> Deflate | None:
    """The extension the server's ``Sec-WebSocket-Extensions`` answer agreed to.

    None when it answered none (a server that refuses the offer: the session goes on
    uncompressed, as a browser's does). ``HandshakeError`` (``invalid_http``) when it
    answered an extension that was not offered or parameters RFC 7692 does not allow: a
    browser fails such a WebSocket too.
    """
    if answer is None or not answer.strip():
        return None
    if not offered(request_headers):
        raise HandshakeError(
            taxonomy.INVALID_HTTP,
            f"server answered Sec-WebSocket-Extensions {answer[:80]!r} to a request that "
            "offered none",
            status=101,
        )
    try:
        items = parse_extension(answer)
    except InvalidHandshake as exc:
        raise HandshakeError(
            taxonomy.INVALID_HTTP, f"malformed Sec-WebSocket-Extensions: {exc}", status=101
        ) from None
    if len(items) != 1 or items[0][0] != "permessage-deflate":
        names = ", ".join(name for name, _ in items)
        raise HandshakeError(
            taxonomy.INVALID_HTTP,
            f"server chose extensions {names!r}; only permessage-deflate was offered",
            status=101,
        )
    params = items[0][1]
    try:
        extension = ClientPerMessageDeflateFactory(
            client_max_window_bits=True, compress_settings=COMPRESS_SETTINGS
        ).process_response_params(params, [])
    except InvalidHandshake as exc:
        raise HandshakeError(
            taxonomy.INVALID_HTTP, f"permessage-deflate parameters refused: {exc}", status=101
        ) from None
    words = [name if value is None else f"{name}={value}" for name, value in params]
    agreed = "; ".join(["permessage-deflate", *words])
    return Deflate(extension, agreed)
