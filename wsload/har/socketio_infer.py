"""The Socket.IO parts of an inferred profile: ``[transport]``, the token, the rejection.

A Socket.IO session's token travels in the CONNECT payload (carrier ``connect``) or, as in
Chainlit, in a cookie the long-polling requests carry too; a refused session ends in a
CONNECT_ERROR packet, often without ever opening a WebSocket (only polling requests hold
it). Events are named by their Socket.IO event; the profile keeps that name under a key
the events' data never uses.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from wsload.har import auth_infer, socketio
from wsload.har.fields import leaves, set_path
from wsload.har.messages import ID_LIKE, Message
from wsload.har.reader import Recording, WebSocketSession

NAME_KEYS = ("event", "event_name", "wsload_event")
SESSION_ID_NAMES = ("sessionid", "session_id", "clientid", "client_id", "tabid", "tab_id")


def name_key(messages: list[Message]) -> str:
    """The key wsload keeps each event's name under: one no event's data uses."""
    used = {key for m in messages for key in m.body}
    return next(k for k in NAME_KEYS if k not in used)


def transport(out, main: WebSocketSession, recording: Recording, packets, auth) -> None:
    """``[transport]`` and, when the CONNECT or a polling request holds it, the token."""
    connect = next((p for p in packets if p.kind == "connect" and p.sent), None)
    handshake = socketio.handshake_exchange(main, recording.http)
    section = out.section("transport")
    section["framing"] = "socketio"
    section["namespace"] = connect.namespace if connect else "/"
    template: dict[str, Any] = {}
    if connect is not None and isinstance(connect.data, dict):
        template = copy.deepcopy(connect.data)
        for path, value in list(leaves(template)):
            if not isinstance(value, str):
                continue
            if auth_infer.JWT.fullmatch(value):
                set_path(template, path, "{token}")
                found = auth_infer.with_token(auth_infer.AuthFindings(), value)
                auth.auth = {"carrier": "connect", "subprotocol": ""}
                auth.token_value, auth.token, auth.subject = value, found.token, found.subject
                auth.notes = [f"token: in the Socket.IO CONNECT auth payload at '{path}'"]
                auth.notes += found.notes
                auth.todo = found.todo
            elif path.rsplit(".", 1)[-1].lower() in SESSION_ID_NAMES:
                set_path(template, path, "{session_id}")  # fresh per connection
    if not auth.auth and handshake is not None:  # a cookie the polling requests carried
        polled = WebSocketSession(
            handshake.url, handshake.request_headers, 101, (), (), handshake.started, False
        )
        found = auth_infer.infer_carrier(polled, recording)
        if found.auth:
            auth.auth, auth.token, auth.subject = found.auth, found.token, found.subject
            auth.token_value, auth.notes, auth.todo = found.token_value, found.notes, found.todo
    auth.connect_auth = template
    section["connect_auth"] = template
    section["open"] = "polling" if handshake is not None else "websocket"
    where = (
        "on HTTP long-polling, then upgraded" if connect and connect.polling else "on the WebSocket"
    )
    out.note(
        "sure",
        f"Socket.IO (Engine.IO {main.query.get('EIO', '?')}): namespace "
        f"{section['namespace']!r}, CONNECT sent {where}; opened with {section['open']}",
    )


def opening_messages(out, opening: list[Message], is_sio: bool) -> None:
    """What the page sent after connecting and before its first chat message."""
    for message in opening:
        if auth_infer.JWT.search(message.raw):
            out.note("sure", f"token: sent in the message {message.name!r} after connecting")
            out.todo.append(
                f"the token travels in the page's first message ({message.name!r}), not in "
                "the upgrade: wsload has no carrier for that; a backend that also takes it in "
                "a subprotocol, query, cookie or header can be loaded with that carrier"
            )
    names = list(dict.fromkeys(m.name for m in opening if m.name))
    if is_sio and names:
        out.section("transport")["connect_emits"] = names
        out.note("likely", f"after the CONNECT the page emitted {', '.join(names)}")
    elif names:
        out.note("guess", f"the page sent {', '.join(names)} before its first chat message")
        out.todo.append(
            f"the page sent {', '.join(names)} after connecting; wsload sends only chat messages"
        )


def rejection(out, recording: Recording, main: WebSocketSession) -> None:
    """A refused CONNECT: its CONNECT_ERROR packet, on polling or on a WebSocket."""
    refused = None
    for session in recording.sessions:
        if session is main:
            continue
        refused = refused or next(
            (p for p in socketio.session_packets(session, ()) if p.kind == "connect_error"), None
        )
    for exchange in recording.http if refused is None else ():
        if "EIO" in exchange.query and exchange.method == "GET":
            for part in exchange.response_body.split(socketio.RECORD_SEPARATOR):
                packet = socketio.parse_packet(part, sent=False, time=0.0, polling=True)
                if packet is not None and packet.kind == "connect_error":
                    refused = packet
                    break
        if refused is not None:
            break
    if refused is None:
        out.note("guess", "rejection: no refused CONNECT recorded; the default keys are kept")
        out.todo.append("rejection: no refused session recorded: check [rejection]")
        return
    section = out.section("rejection")
    section["error_types"] = ["connect_error"]
    data = refused.data if isinstance(refused.data, dict) else {}
    section["error_code_field"] = "message" if "message" in data else next(iter(data), "message")
    section["auth_error_codes"] = []
    # as the profile check reads it: the packet's data, named connect_error
    name_key = out.profile.get("events", {}).get("type_field", "event")
    example = {**data, name_key: "connect_error"}
    out.examples["rejection"] = json.dumps(example, separators=(",", ":"))
    out.note("sure", f"rejection: a refused CONNECT was answered {refused.raw}")


SUBTYPE_FIELDS = ("type", "kind", "role", "name")


def subtypes(messages: list[Message]) -> dict[str, str]:
    """Events the server sends in several kinds under one name (Chainlit's ``new_message``
    for the run, a tool and the answer), and the data field telling the kinds apart."""
    out: dict[str, str] = {}
    names = {m.name for m in messages if not m.sent and m.name}
    for name in sorted(names):
        bodies = [m.body for m in messages if not m.sent and m.name == name]
        for field in SUBTYPE_FIELDS:
            values = [b.get(field) for b in bodies]
            kinds = {v for v in values if isinstance(v, str) and not ID_LIKE.fullmatch(v)}
            if len(kinds) > 1 and all(isinstance(v, str) for v in values):
                out[name] = field
                break
    return out


def refined(messages: list[Message], fields: dict[str, str]) -> list[Message]:
    """The messages with those events named ``name:kind``."""
    out = []
    for m in messages:
        field = fields.get(m.name or "") if not m.sent else None
        if field and isinstance(m.body.get(field), str):
            m = Message(m.sent, m.time, f"{m.name}:{m.body[field]}", m.body, m.raw)
        out.append(m)
    return out
