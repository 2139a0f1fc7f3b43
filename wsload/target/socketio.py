"""The reference target speaking Socket.IO (Engine.IO v4): ``--socketio``.

``SocketIOWebSocket`` wraps aiohttp's ``WebSocketResponse`` and frames what the target's
handlers send and read, so every fault, leak and limit of the target works unchanged over
Socket.IO (the fault matrix runs over it):

* the open: ``0{sid,pingInterval,pingTimeout,maxPayload}``, then the client's CONNECT
  (``40{auth}``), whose ``auth.token`` is a credential like any other carrier's; after a
  long-polling open (``GET ...&transport=polling``) the WebSocket carries the ``sid`` and
  is probed (``2probe``/``3probe``) and upgraded (``5``) instead;
* the ack frame becomes the CONNECT ack ``40{"sid":...}`` followed by the ack as the event
  ``connection_established``; an error frame before it becomes ``44{"message":...}``;
* every other JSON frame ``{"type": name, ...}`` becomes ``42["name", {...}]``; anything
  else (a hostile frame) goes out as it is; binary messages too;
* Engine.IO pings (``2``) every ``--socketio-ping`` seconds, answered ``3``; a half-open
  session stops pinging, as a hung server does;
* the client's ``42["name", data]`` reach the handlers as the JSON object ``data`` (with
  ``type`` = ``name`` when it has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

OPEN_TIMEOUT_S = 10.0
_POLLING_SIDS: dict[str, float] = {}  # sid -> when a polling open handed it out
POLLING_SID_TTL_S = 30.0


def open_packet(sid: str, ping_s: float, max_payload: int, upgrades: list[str]) -> str:
    ms = round(ping_s * 1000)
    body = {"sid": sid, "upgrades": upgrades, "pingInterval": ms, "pingTimeout": ms}
    return "0" + json.dumps({**body, "maxPayload": max_payload}, separators=(",", ":"))


async def polling_open(request: web.Request, ping_s: float, max_payload: int) -> web.Response:
    """``GET ...?EIO=4&transport=polling``: a session to upgrade (nothing else is polled)."""
    if request.query.get("EIO") != "4":
        return web.Response(status=400, text="unsupported Engine.IO version")
    now = time.monotonic()
    for sid, at in list(_POLLING_SIDS.items()):
        if now - at > POLLING_SID_TTL_S:
            del _POLLING_SIDS[sid]
    sid = secrets.token_urlsafe(12)
    _POLLING_SIDS[sid] = now
    return web.Response(
        text=open_packet(sid, ping_s, max_payload, ["websocket"]),
        content_type="text/plain",
    )


class SocketIOWebSocket:
    """A ``WebSocketResponse`` as the target's handlers use it, framed as Socket.IO."""

    def __init__(self, ws: web.WebSocketResponse, *, ping_s: float, max_payload: int) -> None:
        self._ws = ws
        self._ping_s = ping_s
        self._max_payload = max_payload
        self._connected = False
        self._pinger: asyncio.Task[None] | None = None
        self.half_open = False  # set by the target when the session goes half-open
        self.sid = secrets.token_urlsafe(12)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    # the open ------------------------------------------------------------------------
    async def open(self, sid: str | None) -> dict[str, Any] | None:
        """Open Engine.IO and take the client's CONNECT; its auth payload (None: none).

        Raises ``ConnectionError`` when the client does not get that far.
        """
        ws = self._ws
        if sid is not None and _POLLING_SIDS.pop(sid, None) is not None:
            for expected, answer in (("2probe", "3probe"), ("5", None)):
                msg = await ws.receive(timeout=OPEN_TIMEOUT_S)
                if msg.type is not WSMsgType.TEXT or msg.data != expected:
                    raise ConnectionError("no Engine.IO upgrade")
                if answer:
                    await ws.send_str(answer)
        else:
            await ws.send_str(open_packet(self.sid, self._ping_s, self._max_payload, []))
        self._pinger = asyncio.get_running_loop().create_task(self._ping())
        while True:
            msg = await ws.receive(timeout=OPEN_TIMEOUT_S)
            if msg.type is not WSMsgType.TEXT:
                raise ConnectionError("closed before the CONNECT")
            if msg.data.startswith("40"):
                payload = msg.data[2:]
                if payload.startswith("/"):  # the namespace: any is served
                    payload = payload.partition(",")[2]
                try:
                    auth = json.loads(payload) if payload else None
                except ValueError:
                    auth = None
                return auth if isinstance(auth, dict) else None

    async def _ping(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not self._ws.closed:
                await asyncio.sleep(self._ping_s)
                if self.half_open or self._ws.closed:
                    return
                await self._ws.send_str("2")

    # sending -------------------------------------------------------------------------
    async def send_str(self, text: str, compress: int | None = None) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._ws.send_str(text)  # not an event: as it is (hostile frames)
            return
        name = frame["type"]
        if not self._connected:
            if name == "connection_established":
                self._connected = True
                await self._ws.send_str(f'40{{"sid":"{self.sid}"}}')
            elif name == "error_message":
                message = frame.get("error_message") or frame.get("error_code") or "refused"
                body = {"message": message, "data": frame}
                await self._ws.send_str("44" + json.dumps(body, separators=(",", ":")))
                return
        await self._ws.send_str("42" + json.dumps([name, frame], separators=(",", ":")))

    async def close(self, *args: Any, **kwargs: Any) -> bool:
        if self._pinger is not None:
            self._pinger.cancel()
        return await self._ws.close(*args, **kwargs)

    # receiving -----------------------------------------------------------------------
    async def receive(self, timeout: float | None = None) -> WSMessage:
        while True:
            msg = await self._ws.receive(timeout)
            if msg.type is not WSMsgType.TEXT:
                return msg
            text = msg.data
            if text == "3" or text.startswith("40") or text == "5":
                continue  # a pong, a second CONNECT, a late upgrade: nothing for the handlers
            if text.startswith("42"):
                body = text[2:]
                if body.startswith("/"):
                    body = body.partition(",")[2]
                try:
                    args = json.loads(body)
                    name, data = args[0], args[1] if len(args) > 1 else {}
                except (ValueError, IndexError, KeyError, TypeError):
                    return WSMessage(WSMsgType.TEXT, text, None)
                if isinstance(data, dict) and "type" not in data:
                    data = {"type": name, **data}
                return WSMessage(WSMsgType.TEXT, json.dumps(data), None)
            return msg
