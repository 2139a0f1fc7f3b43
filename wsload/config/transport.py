"""The ``[transport]`` section of a profile: how application messages ride in WebSocket
messages, one JSON object per text frame or Socket.IO (Engine.IO v4) packets.

The keys and their checks live here; the codec that speaks Socket.IO is
``wsload.protocol.socketio``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

FRAMINGS = ("json", "socketio")
SOCKETIO_OPENS = ("websocket", "polling")
# placeholders of transport.connect_auth: the token, a fresh id per connection, the subject
CONNECT_PLACEHOLDERS = ("token", "session_id", "sub")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Transport:
    """How messages ride in WebSocket messages: plain JSON, or Socket.IO (Engine.IO v4)."""

    framing: str = "json"  # json | socketio
    namespace: str = "/"  # socketio: the namespace CONNECTed to
    connect_auth: dict[str, Any] = field(default_factory=dict)  # socketio: CONNECT's payload
    open: str = "websocket"  # socketio: websocket | polling (then upgrade, as browsers do)
    # socketio: event name -> dotted field of its data whose value refines its type
    # (``new_message`` with ``type = "tool"`` is the event type ``new_message:tool``)
    subtype_fields: dict[str, Any] = field(default_factory=dict)
    # socketio: events emitted (without data) right after the CONNECT ack, as the frontend does
    connect_emits: tuple[str, ...] = ()


def transport_problem(t: Transport, carrier: str, emit: str) -> tuple[str, str] | None:
    """(key, problem) of a ``[transport]`` section (with the profile's carrier and chat emit)
    that cannot be used, else None."""
    if t.framing not in FRAMINGS:
        return "transport.framing", f"{t.framing!r} is not one of {', '.join(FRAMINGS)}"
    if t.open not in SOCKETIO_OPENS:
        return "transport.open", f"{t.open!r} is not one of {', '.join(SOCKETIO_OPENS)}"
    if not t.namespace.startswith("/") or "," in t.namespace:
        return "transport.namespace", f"must start with '/' and hold no ',': {t.namespace!r}"
    unknown = sorted(set(_placeholders(t.connect_auth)) - set(CONNECT_PLACEHOLDERS))
    if unknown:
        known = ", ".join(f"{{{n}}}" for n in CONNECT_PLACEHOLDERS)
        return (
            "transport.connect_auth",
            f"unknown placeholder {{{unknown[0]}}}: only {known} are filled in",
        )
    for name, dotted in t.subtype_fields.items():
        if not isinstance(dotted, str) or not dotted:
            return f"transport.subtype_fields.{name}", "must be a dotted field name"
    if carrier == "connect":
        if t.framing != "socketio":
            return (
                "auth.carrier",
                "the connect carrier puts the token in the Socket.IO CONNECT packet: "
                'it needs transport.framing = "socketio"',
            )
        if "token" not in _placeholders(t.connect_auth):
            return (
                "transport.connect_auth",
                'the connect carrier needs "{token}" in it (e.g. { token = "{token}" })',
            )
    if t.framing == "socketio" and not emit:
        return "chat.emit", "name the event the chat message is emitted as"
    return None


def _placeholders(value: Any) -> list[str]:
    if isinstance(value, str):
        return _PLACEHOLDER.findall(value)
    if isinstance(value, dict):
        return [n for v in value.values() for n in _placeholders(v)]
    if isinstance(value, list):
        return [n for v in value for n in _placeholders(v)]
    return []
