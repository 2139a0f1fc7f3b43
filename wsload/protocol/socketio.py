"""Socket.IO over WebSocket (Engine.IO v4, Socket.IO v5) as a codec of the session, sans I/O.

``SocketIOCodec`` sits where ``JsonTextCodec`` sits under a ``ClientSession``: the session
still does the upgrade, frames, close and the sorting of events; the codec turns Engine.IO
packets into events and back. Packets are read and written with python-engineio's and
python-socketio's own packet classes (``engineio.packet``, ``socketio.packet``), the ones
Locust already depends on, not a parser of wsload's own.

What each packet becomes:

* ``0{sid,pingInterval,pingTimeout,maxPayload}`` (the Engine.IO open): remembered; the
  CONNECT of the profile's namespace with its auth payload is the answer (``replies``).
* ``2`` (the server's ping): answered ``3``, counted (``pings``): a connection whose pings
  stop for ``pingInterval + pingTimeout`` is half-open.
* ``3probe`` (after a polling open, the WebSocket probe answered): ``5`` (upgrade), then
  the CONNECT.
* ``40{sid}`` of our namespace: the event ``connect`` (the profile's ack matches it);
  ``44{message}``: the event ``connect_error`` (a rejection, at once: no close follows).
* ``42[name, data, ...]`` (and ``42/ns,``): the event ``name``; its object is a copy of
  its first data argument (``{"data": value}`` when that is no object) with the event type
  stored under the profile's ``events.type_field``, so grammar, spans and correlation
  read fields inside the data. A name listed in ``transport.subtype_fields`` is refined
  by a field of its data (``new_message`` with ``type = "tool"``: ``new_message:tool``).
* ``43`` (an ack of an emit), ``6`` (noop), ``1`` (close): no event. Binary events
  (``45-``) decode to their event with the attachments' placeholders; binary messages are
  their attachments and decode to nothing; any other binary message is a protocol error.

The chat message goes out as ``42["<chat.emit>", <message>]``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import engineio.packet as eio
import orjson
import socketio.packet as sio

from wsload.config.profile import Profile
from wsload.config.templates import fill_template, get_field
from wsload.protocol.codec import CodecError
from wsload.protocol.socketio_names import (  # noqa: F401 - the codec's names, re-exported
    CONNECT_ERROR_EVENT,
    CONNECT_EVENT,
    PLAIN_JSON_HINT,
    connect_refusal,
)

PROBE, OPENING, CONNECTING, CONNECTED = "probe", "opening", "connecting", "connected"


class _Json:
    """The json module python-socketio's packets use, with orjson's faster ``loads``."""

    loads = staticmethod(orjson.loads)
    dumps = staticmethod(json.dumps)


class _Packet(sio.Packet):
    json = _Json


class SocketIOSettings:
    """What a profile says about its Socket.IO transport, compiled once per profile."""

    __slots__ = (
        "connect_emits", "emit_prefix", "encode_prefix", "event_prefix", "namespace", "ns_prefix",
        "subtype_fields", "type_field",
    )  # fmt: skip

    def __init__(self, profile: Profile) -> None:
        t = profile.transport
        self.namespace = t.namespace
        self.ns_prefix = "" if t.namespace == "/" else t.namespace + ","
        self.type_field = profile.events.type_field
        self.subtype_fields: dict[str, str] = dict(t.subtype_fields)
        name = json.dumps(profile.chat.emit, ensure_ascii=False)
        self.encode_prefix = "42" + self.ns_prefix
        self.event_prefix = "42" + self.ns_prefix + "["  # an event: the hot path
        self.emit_prefix = f"42{self.ns_prefix}[{name},"
        self.connect_emits = tuple(
            f"42{self.ns_prefix}{json.dumps([e], ensure_ascii=False)}" for e in t.connect_emits
        )


_SETTINGS: dict[int, tuple[Profile, SocketIOSettings]] = {}


def settings_for(profile: Profile) -> SocketIOSettings:
    cached = _SETTINGS.get(id(profile))
    if cached is None or cached[0] is not profile:
        cached = _SETTINGS[id(profile)] = (profile, SocketIOSettings(profile))
    return cached[1]


def connect_packet(settings: SocketIOSettings, auth: Any) -> str:
    """The CONNECT of the namespace, with ``auth`` as its payload (None or {}: none)."""
    packet = sio.Packet(sio.CONNECT, data=auth or None, namespace=settings.namespace)
    return eio.Packet(eio.MESSAGE, data=packet.encode()).encode()


def connect_auth(profile: Profile, token: str | None, subject: str = "") -> Any:
    """The profile's CONNECT payload with ``{token}``, ``{session_id}`` and ``{sub}`` filled
    in (a fresh session id per connection); None when the template is empty."""
    template = profile.transport.connect_auth
    if not template:
        return None
    values = {"token": token or "", "session_id": str(uuid.uuid4()), "sub": subject}
    return fill_template(template, values)


class SocketIOCodec:
    """One session's Engine.IO and Socket.IO state; decodes packets into events."""

    __slots__ = (
        "_attachments", "_connect", "_replies", "_settings", "open_packet", "phase", "pings",
        "sid",
    )  # fmt: skip

    def __init__(
        self, settings: SocketIOSettings, auth: Any = None, *, open_packet: dict | None = None
    ) -> None:
        self._settings = settings
        self._connect = connect_packet(settings, auth)
        self._replies: list[str] = []
        self._attachments = 0  # binary messages still due for a binary event
        self.pings = 0
        self.sid: str | None = None  # the Socket.IO session id of the CONNECT ack
        # After a polling open the Engine.IO session exists already: probe, then upgrade.
        self.open_packet = open_packet
        if open_packet is not None:
            self.phase = PROBE
            self._replies.append(eio.Packet(eio.PING, data="probe").encode())
        else:
            self.phase = OPENING

    @property
    def ping_deadline_s(self) -> float | None:
        """How long without a server ping means a half-open connection (from the open)."""
        opened = self.open_packet
        if not opened:
            return None
        try:
            return (float(opened["pingInterval"]) + float(opened["pingTimeout"])) / 1000.0
        except (KeyError, TypeError, ValueError):
            return None

    # decoding --------------------------------------------------------------------------
    def decode_text(self, text: str) -> tuple[Any, dict[str, Any]] | None:
        prefix = self._settings.event_prefix
        if text.startswith(prefix):
            # The hot path, an event of our namespace without ack id or attachments: one
            # orjson call (python-socketio's parser costs 2-3x more per event, measured in
            # benchmarks/socketio_codec.py); every other packet goes through the libraries.
            try:
                args = orjson.loads(text[len(prefix) - 1 :])
            except orjson.JSONDecodeError:
                raise CodecError(f"not a Socket.IO packet: {text[:40]!r}") from None
            if type(args) is not list or not args or type(args[0]) is not str:
                raise CodecError("a Socket.IO event without a name")
            return self._event(args[0], args[1] if len(args) > 1 else None)
        try:
            packet = eio.Packet(encoded_packet=text)
        except (ValueError, IndexError):
            raise CodecError(self._not_engineio(text)) from None
        kind = packet.packet_type
        if kind == eio.MESSAGE:
            data = packet.data
            if not isinstance(data, str):  # "4" + JSON is no Socket.IO packet
                data = text[1:]
            return self._message(data)
        if kind == eio.PING:
            self.pings += 1
            self._replies.append(eio.Packet(eio.PONG, data=packet.data).encode())
            return None
        if kind == eio.OPEN:
            if not isinstance(packet.data, dict):
                raise CodecError("an Engine.IO open packet without its JSON object")
            self.open_packet = packet.data
            if self.phase == OPENING:
                self.phase = CONNECTING
                self._replies.append(self._connect)
            return None
        if kind == eio.PONG:
            if packet.data == "probe" and self.phase == PROBE:
                self.phase = CONNECTING
                self._replies += (eio.Packet(eio.UPGRADE).encode(), self._connect)
            return None
        if kind in (eio.NOOP, eio.CLOSE, eio.UPGRADE):
            return None
        raise CodecError(self._not_engineio(text))  # pragma: no cover - int() took it

    def decode_binary(self, data: bytes) -> tuple[Any, dict[str, Any]] | None:
        if self._attachments:
            self._attachments -= 1  # an attachment of a binary event: its data, not an event
            return None
        raise CodecError(f"a binary message of {len(data)} bytes outside a Socket.IO binary event")

    def _message(self, text: str) -> tuple[Any, dict[str, Any]] | None:
        try:
            packet = _Packet(encoded_packet=text)
        except (ValueError, TypeError, IndexError):
            raise CodecError(f"not a Socket.IO packet: {text[:40]!r}") from None
        settings = self._settings
        namespace = packet.namespace or "/"
        kind = packet.packet_type
        if namespace != settings.namespace:
            return None  # another namespace of the same connection: not this session's
        if kind == sio.EVENT or kind == sio.BINARY_EVENT:
            if kind == sio.BINARY_EVENT:
                self._attachments += packet.attachment_count
            args = packet.data
            if type(args) is not list or not args or type(args[0]) is not str:
                raise CodecError("a Socket.IO event without a name")
            return self._event(args[0], args[1] if len(args) > 1 else None)
        if kind == sio.CONNECT:
            data = packet.data if isinstance(packet.data, dict) else {}
            self.sid = data.get("sid")
            self.phase = CONNECTED
            self._replies.extend(settings.connect_emits)
            return CONNECT_EVENT, {**data, settings.type_field: CONNECT_EVENT}
        if kind == sio.CONNECT_ERROR:
            data = packet.data
            event = dict(data) if isinstance(data, dict) else {"message": data}
            event[settings.type_field] = CONNECT_ERROR_EVENT
            return CONNECT_ERROR_EVENT, event
        if kind == sio.DISCONNECT:
            raise CodecError(f"the server disconnected the Socket.IO namespace {namespace}")
        if kind == sio.BINARY_ACK:
            self._attachments += packet.attachment_count
        return None  # an ack of an emit: no event

    def _event(self, name: str, data: Any) -> tuple[str, dict[str, Any]]:
        settings = self._settings
        event = dict(data) if type(data) is dict else {"data": data}
        field = settings.subtype_fields.get(name)
        if field is not None:
            value = get_field(data, field)
            if value is not None:
                name = f"{name}:{value}"
        event[settings.type_field] = name
        return name, event

    def _not_engineio(self, text: str) -> str:
        if text[:1] in ("{", "["):
            return PLAIN_JSON_HINT
        return f"not an Engine.IO packet: {text[:40]!r}"

    # encoding --------------------------------------------------------------------------
    def encode(self, message: Any) -> str:
        return self._settings.emit_prefix + json.dumps(message, separators=(",", ":")) + "]"

    def wrap(self, payload: str) -> str:
        return self._settings.emit_prefix + payload + "]"

    def replies(self) -> list[str]:
        if not self._replies:
            return []
        out = self._replies
        self._replies = []
        return out
