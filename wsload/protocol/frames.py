"""Server-to-client WebSocket frames (RFC 6455), sans I/O: bytes in, messages out.

wsload reads frames itself rather than through a client library so that it can bound
what a server makes it hold (a hostile or broken server cannot make it allocate a
gigabyte), classify every protocol violation instead of crashing on it, and take many
frames out of one ``recv``: under load one read often returns a whole agent turn.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
RSV1 = 0x40  # "compressed" under permessage-deflate (RFC 7692); an opcode | RSV1 sets it
KIND = {TEXT: "text", BINARY: "binary", CLOSE: "close", PING: "ping", PONG: "pong"}
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class FrameError(Exception):
    """The server broke the framing rules; ``close_code`` is what to close with."""

    def __init__(self, reason: str, close_code: int = 1002) -> None:
        self.reason = reason
        self.close_code = close_code
        super().__init__(reason)


@dataclass(slots=True)  # not frozen: a frozen init costs three times as much, per frame
class Message:
    """One whole message: text (already UTF-8 decoded), binary, or a control frame."""

    kind: str
    data: bytes | str


class FrameParser:
    """Incremental parser: ``feed`` bytes as they arrive, take whole messages back."""

    __slots__ = (
        "_buffer", "_fragment_opcode", "_fragment_size", "_fragments", "inflate",
        "max_message_bytes",
    )  # fmt: skip

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._fragments: list[bytes] | tuple[()] = ()  # a list only inside a fragmented one
        self._fragment_opcode = 0  # with RSV1 when the message is compressed
        self._fragment_size = 0
        # set once permessage-deflate is negotiated: (payload, opcode, max size) -> payload
        self.inflate: Callable[[bytes, int, int], bytes] | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a message."""
        return len(self._buffer) + self._fragment_size

    def feed(self, data: bytes) -> list[Message]:
        """Take received bytes; return the messages they complete, in order."""
        buf = self._buffer
        # Most reads start on a frame boundary: parse them where they are, and buffer
        # only what is left over, instead of copying every read into the buffer first.
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        out: list[Message] = []
        pos = 0
        end = len(view)
        limit = self.max_message_bytes
        while end - pos >= 2:
            b0 = view[pos]
            b1 = view[pos + 1]
            length = b1 & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (view[pos + 2] << 8) | view[pos + 3]
                header = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 10], "big")
                header = 10
            if b1 & 0x80:
                raise FrameError("the server masked a frame (RFC 6455 5.1 forbids it)")
            opcode = b0 & 0x0F
            rsv = b0 & 0x70  # RSV1 alone, on a message's first frame: compressed
            if rsv and (rsv != RSV1 or self.inflate is None or opcode >= 0x8 or opcode == 0):
                if self.inflate is None:
                    raise FrameError("reserved bits set without a negotiated extension")
                raise FrameError("RSV2/RSV3, or RSV1 on a control or continuation frame")
            if length > limit or (opcode < 0x8 and self._fragment_size + length > limit):
                raise FrameError(f"a message over {limit} bytes", close_code=1009)
            if end - pos < header + length:
                if opcode >= 0x8 and length > 125:
                    raise FrameError("a control frame over 125 bytes")
                break
            start = pos + header
            payload = bytes(view[start : start + length])  # no second copy of bytes
            pos = start + length
            fin = b0 & 0x80
            if opcode >= 0x8:
                if not fin or length > 125:
                    raise FrameError("a fragmented or oversized control frame")
                if opcode not in KIND:
                    raise FrameError(f"unknown control opcode {opcode:#x}")
                out.append(Message(KIND[opcode], payload))
                continue
            if opcode == CONTINUATION:
                if not self._fragments:
                    raise FrameError("a continuation frame with nothing to continue")
                self._fragments.append(payload)  # type: ignore[union-attr]
                self._fragment_size += length
                if fin:
                    opcode = self._fragment_opcode
                    payload = b"".join(self._fragments)
                    self._fragments = ()
                    self._fragment_size = 0
                else:
                    continue
            elif opcode in (TEXT, BINARY):
                if self._fragments:
                    raise FrameError("a new message inside a fragmented one")
                opcode |= rsv  # the message is inflated once it is whole
                if not fin:
                    self._fragments = [payload]
                    self._fragment_opcode = opcode
                    self._fragment_size = length
                    continue
            else:
                raise FrameError(f"unknown data opcode {opcode:#x}")
            if opcode & RSV1:
                opcode &= 0x0F
                payload = self.inflate(payload, opcode, limit)  # type: ignore[misc]
            if opcode == TEXT:
                try:
                    out.append(Message("text", payload.decode("utf-8")))
                except UnicodeDecodeError:
                    raise FrameError("a text message that is not UTF-8", close_code=1007) from None
            else:
                out.append(Message("binary", payload))
        if view is buf:
            if pos:
                del buf[:pos]
        elif pos < end:
            buf += view[pos:]
        return out


def close_payload(data: bytes) -> tuple[int, str]:
    """Close code and reason of a close frame's payload (1005 when it carries no code)."""
    if len(data) < 2:
        return 1005, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", "replace")


def decode_json(text: str) -> Any:
    """Parse a JSON message; ``ValueError`` when it is not JSON.

    orjson first (four times faster: it runs for every event of every turn), the standard
    library for what orjson refuses but JSON readers commonly accept (NaN, huge integers).
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def client_frame(payload: bytes, opcode: int = TEXT, mask_key: bytes | None = None) -> bytes:
    """One masked client frame (RFC 6455 5.2-5.3), the bytes any RFC 6455 client sends.

    Built directly because every chat message goes through it: masking the payload as one
    big integer XOR is a few microseconds instead of an ABNF object per message.
    """
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
    key = mask_key if mask_key is not None else os.urandom(4)
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return header + key + masked


def payload_size(frame: bytes) -> int:
    """The payload length a frame's header announces."""
    n = frame[1] & 0x7F
    if n == 126:
        return int.from_bytes(frame[2:4], "big")
    if n == 127:
        return int.from_bytes(frame[2:10], "big")
    return n
