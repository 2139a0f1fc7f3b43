"""Socket.IO over Engine.IO v4 as recorded: packets out of WebSocket frames and polling bodies.

A Socket.IO client may open a session with HTTP long-polling (``?EIO=4&transport=polling``),
send its CONNECT (with the auth payload) in a POST body, and only then upgrade to a
WebSocket (``2probe``/``3probe``/``5``). The recording then holds the CONNECT and its answer
in HTTP entries, not in the WebSocket's frames; both are read here into one ordered list of
packets of the session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wsload.har.reader import Frame, HttpExchange, WebSocketSession

RECORD_SEPARATOR = "\x1e"  # between packets of one polling body (Engine.IO v4)
ENGINE_KINDS = {"0": "open", "1": "close", "2": "ping", "3": "pong", "5": "upgrade", "6": "noop"}
SOCKET_KINDS = {
    "0": "connect",
    "1": "disconnect",
    "2": "event",
    "3": "ack",
    "4": "connect_error",
    "5": "binary_event",
    "6": "binary_ack",
}


@dataclass(frozen=True)
class Packet:
    """One Engine.IO packet, and for a message the Socket.IO packet in it."""

    sent: bool
    time: float
    kind: str  # open ping pong upgrade noop close | connect event ack connect_error ...
    namespace: str
    data: Any  # the JSON payload (event: the list [name, *args]); None without one
    raw: str  # the packet's text as on the wire
    polling: bool  # carried by an HTTP long-polling request, not the WebSocket

    @property
    def event(self) -> str | None:
        if self.kind == "event" and isinstance(self.data, list) and self.data:
            return str(self.data[0])
        return None

    @property
    def argument(self) -> Any:
        """An event's first data argument (where its fields are read), else None."""
        if self.kind == "event" and isinstance(self.data, list) and len(self.data) > 1:
            return self.data[1]
        return None


def is_socketio(session: WebSocketSession) -> bool:
    return "EIO" in session.query


def parse_packet(text: str, *, sent: bool, time: float, polling: bool) -> Packet | None:
    """One packet's text, or None when it is not an Engine.IO packet."""
    if not text:
        return None
    head, rest = text[0], text[1:]
    if head in ENGINE_KINDS:
        data = rest or None
        if head == "0" and rest:
            data = _json(rest)
        return Packet(sent, time, ENGINE_KINDS[head], "/", data, text, polling)
    if head != "4" or not rest or rest[0] not in SOCKET_KINDS:
        return None
    kind = SOCKET_KINDS[rest[0]]
    body = rest[1:]
    if kind.startswith("binary") and "-" in body:
        body = body.split("-", 1)[1]
    namespace = "/"
    if body.startswith("/"):
        namespace, _, body = body.partition(",")
    digits = len(body) - len(body.lstrip("0123456789"))
    body = body[digits:]  # an ack id
    return Packet(sent, time, kind, namespace, _json(body) if body else None, text, polling)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def session_packets(session: WebSocketSession, http: tuple[HttpExchange, ...]) -> list[Packet]:
    """The session's packets in order: its long-polling exchanges (same ``sid``), then
    the WebSocket's frames."""
    sid = session.query.get("sid")
    packets: list[Packet] = []
    if sid:
        for exchange in http:
            query = exchange.query
            if exchange.path != session.path or query.get("sid") != sid:
                continue
            at = _epoch(exchange.started)
            sent_body = exchange.request_body if exchange.method == "POST" else ""
            received = exchange.response_body if exchange.method == "GET" else ""
            for text, sent in ((sent_body, True), (received, False)):
                for part in text.split(RECORD_SEPARATOR) if text else ():
                    packet = parse_packet(part, sent=sent, time=at, polling=True)
                    if packet is not None:
                        packets.append(packet)
    for frame in session.frames:
        packet = _frame_packet(frame)
        if packet is not None:
            packets.append(packet)
    return packets


def handshake_exchange(
    session: WebSocketSession, http: tuple[HttpExchange, ...]
) -> HttpExchange | None:
    """The polling request that opened the session (its answer names the ``sid``)."""
    sid = session.query.get("sid")
    if not sid:
        return None
    for exchange in http:
        opening = exchange.path == session.path and "sid" not in exchange.query
        if opening and f'"sid":"{sid}"' in exchange.response_body.replace(" ", ""):
            return exchange
    return None


def _frame_packet(frame: Frame) -> Packet | None:
    if frame.opcode != 1:
        return None
    return parse_packet(frame.data, sent=frame.sent, time=frame.time, polling=False)
