"""Codecs: how application messages ride inside WebSocket messages, sans I/O.

A ``ClientSession`` (``wsload.protocol.session``) does the WebSocket part (upgrade, frames,
close, control pings) and the agent-chat part (ack, turns, sorting of every event); between
the two sits a codec that turns one received WebSocket message into an event and an
outgoing message into the text of one WebSocket message. The session never looks inside a
payload itself, so another transport is another codec under the same session:

* ``JsonTextCodec``: one JSON object per text message, the event type in the profile's
  type field. What the reference target and most agent-chat backends speak.
* A Socket.IO codec would decode Engine.IO packets inside text messages: ``42["name",
  {...}]`` becomes (``name``, the object), ``2`` (an Engine.IO ping) is answered ``3``
  through ``replies()``, ``40`` opens the namespace; ``encode`` wraps a chat message as
  ``42["message", ...]``. Packets that carry no event decode to ``None``.
* A permessage-deflate extension sits under the codec, not in it: it is negotiated in the
  upgrade (``Sec-WebSocket-Extensions``), lets the frame parser accept RSV1 and inflates
  each message before the codec sees it, and deflates what ``ClientSession.send_text``
  frames. Codecs see whole, plain messages either way.

A codec is told nothing about turns, users or time; it only decodes and encodes, and says
what is malformed by raising ``CodecError`` with a short description.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from wsload.protocol.frames import decode_json

# json.dumps(..., separators=...) builds an encoder per call; every heartbeat comes through here
_COMPACT = json.JSONEncoder(separators=(",", ":"))


class CodecError(ValueError):
    """A message the codec cannot make an event of; ``detail`` says why, for the sample."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class Codec(Protocol):
    """What a ``ClientSession`` needs from a transport encoding."""

    def decode_text(self, text: str) -> tuple[Any, dict[str, Any]] | None:
        """The event type (as sent: maybe not a string) and the event object of one text
        message; None for a transport packet that is no event; ``CodecError`` when malformed.
        """

    def decode_binary(self, data: bytes) -> tuple[Any, dict[str, Any]] | None:
        """The same for a binary message."""

    def encode(self, message: Any) -> str:
        """The text of one WebSocket message carrying the JSON-able ``message``."""

    def wrap(self, payload: str) -> str:
        """The text of one WebSocket message carrying an already serialised JSON message."""

    def replies(self) -> list[str]:
        """Texts the codec must send itself (transport-level answers), taken once."""


class JsonTextCodec:
    """One JSON object per text message; binary messages are not part of the protocol."""

    __slots__ = ("type_field",)

    def __init__(self, type_field: str = "type") -> None:
        self.type_field = type_field

    def decode_text(self, text: str) -> tuple[Any, dict[str, Any]]:
        try:
            event = decode_json(text)
        except ValueError:
            raise CodecError("not JSON") from None
        if type(event) is not dict:
            raise CodecError("not a JSON object")
        return event.get(self.type_field), event

    def decode_binary(self, data: bytes) -> tuple[Any, dict[str, Any]]:
        raise CodecError("a binary frame where JSON text was expected")

    def encode(self, message: Any) -> str:
        return _COMPACT.encode(message)

    def wrap(self, payload: str) -> str:
        return payload

    def replies(self) -> list[str]:
        return []
