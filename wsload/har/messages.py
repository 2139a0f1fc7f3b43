"""A recorded session as a list of application messages, whatever its framing.

JSON framing: each text frame is one JSON object; its name is read from the type field
(chosen here as the field naming most server frames). Socket.IO framing: each EVENT packet
is one message named by its event, its fields read in the first data argument; transport
packets (open, ping/pong, CONNECT, upgrade) are kept apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from wsload.har.socketio import Packet

ID_LIKE = re.compile(r"[0-9a-fA-F-]{16,}|\d+([.:]\d+)*|\d{4}-\d\d-\d\dT[\d:.]+Z?")
TYPE_FIELDS = ("type", "event", "action", "kind", "op", "msg_type", "message_type", "t")


@dataclass(frozen=True, eq=False)  # two frames with the same bytes are two messages
class Message:
    sent: bool
    time: float
    name: str | None  # the event or message type; None when it has none
    body: dict[str, Any]  # where its fields are read
    raw: str  # the frame's text, as on the wire


def choose_type_field(objects: list[dict[str, Any]]) -> str:
    """The top-level field naming the server's messages: a short string most of them have
    whose values differ (a constant such as ``"jsonrpc": "2.0"`` names nothing) without
    being ids, the usual names first on a tie."""
    values: dict[str, list[str]] = {}
    for obj in objects:
        for key, value in obj.items():
            if isinstance(value, str) and len(value) <= 64 and not ID_LIKE.fullmatch(value):
                values.setdefault(key, []).append(value)
    if not values:
        return "type"

    def score(key: str) -> tuple[bool, int, bool, int]:
        seen = values[key]
        distinct = len(set(seen))
        vocabulary = 1 < distinct <= max(2, len(seen) // 2) or (len(seen) < 4 and distinct > 1)
        usual = key in TYPE_FIELDS
        return (len(seen) * 5 >= len(objects) * 4, vocabulary, usual, len(seen))

    return max(sorted(values), key=score)


def choose_client_field(objects: list[dict[str, Any]]) -> str:
    """The field naming the page's messages: every chat message has the same kind, so the
    usual names first, then the string with the fewest and shortest values (not the text)."""
    if not objects:
        return "type"
    keys = set.intersection(*(set(o) for o in objects))
    scored = []
    for key in keys:
        seen = [o[key] for o in objects]
        if all(isinstance(v, str) and not ID_LIKE.fullmatch(v) for v in seen):
            length = sum(len(v) for v in seen) / len(seen)
            scored.append((key not in TYPE_FIELDS, len(set(seen)), length, key))
    return min(scored)[3] if scored else "type"


def json_messages(frames) -> tuple[list[Message], str, str]:
    """The frames as messages, the server's type field and the client's."""
    parsed = []
    for frame in frames:
        try:
            value = json.loads(frame.data) if frame.opcode == 1 else None
        except ValueError:
            value = None
        parsed.append((frame, value if isinstance(value, dict) else None))
    server_field = choose_type_field([v for f, v in parsed if v is not None and not f.sent])
    client_field = choose_client_field([v for f, v in parsed if v is not None and f.sent])
    out = []
    for frame, value in parsed:
        body = value or {}
        name = body.get(client_field if frame.sent else server_field)
        out.append(
            Message(
                frame.sent, frame.time, name if isinstance(name, str) else None, body, frame.data
            )
        )
    return out, server_field, client_field


def socketio_messages(packets: list[Packet]) -> list[Message]:
    """The EVENT packets as messages (name: the event; body: its first data argument)."""
    out = []
    for packet in packets:
        if packet.kind != "event" or packet.event is None:
            continue
        argument = packet.argument
        body = argument if isinstance(argument, dict) else {}
        out.append(Message(packet.sent, packet.time, packet.event, body, packet.raw))
    return out
