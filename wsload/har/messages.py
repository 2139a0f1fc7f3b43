"""A recorded session as a list of application messages, whatever its framing.

JSON framing: each text frame is one JSON object; its name is read from the type field
(chosen here as the field naming most server frames). Socket.IO framing: each EVENT packet
is one message named by its event, its fields read in the first data argument; transport
packets (open, ping/pong, CONNECT, upgrade) are kept apart.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from wsload.har.socketio import Packet

TYPE_FIELDS = ("type", "event", "action", "kind", "op", "msg_type", "message_type", "t")


@dataclass(frozen=True)
class Message:
    sent: bool
    time: float
    name: str | None  # the event or message type; None when it has none
    body: dict[str, Any]  # where its fields are read
    raw: str  # the frame's text, as on the wire


def choose_type_field(objects: list[dict[str, Any]]) -> str:
    """The top-level field naming the server's messages: the string field most of them
    have, preferring the usual names on a tie."""
    counts: Counter[str] = Counter()
    for obj in objects:
        for key, value in obj.items():
            if isinstance(value, str) and len(value) <= 64:
                counts[key] += 1
    if not counts:
        return "type"
    best = max(counts.values())
    tied = [k for k, c in counts.items() if c == best]
    for usual in TYPE_FIELDS:
        if usual in tied:
            return usual
    return sorted(tied)[0]


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
    client_field = choose_type_field([v for f, v in parsed if v is not None and f.sent])
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
