"""The aiohttp application of the reference target: WebSocket chat plus the HTTP auth API.

Handlers only do I/O: what the token is and whether it is valid comes from ``auth``; what
happens to a connection or a turn (limits, expiry, faults, leaks, overload) from ``policy``,
which the handlers carry out and count when it reaches the wire. Hot paths (ack, events,
pong) build JSON text directly and nothing is logged per connection or per event; the access
log is off because request lines carry tokens in query strings. With every fault knob off a
turn takes the plain send path, which checks no knob per event. Counters are per process,
served by /health and /stats (``/stats?all=1`` sums the workers, see ``stats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from wsload.heap import PeakFreezer
from wsload.target.agent import (
    correlation,
)
from wsload.target.auth import (
    AuthOutcome,
    Credentials,
    Negotiation,
    extract_credentials,
    negotiate,
    parse_subprotocols,
)
from wsload.target.config import WS_PATHS, Material, TargetConfig
from wsload.target.http_api import (
    error_response,
    health_handler,
    login_handler,
    refresh_handler,
    stats_handler,
    ticket_handler,
)
from wsload.target.policy import (
    CLOSE_1013,
    REFUSE_503,
    ConnectionPlan,
)
from wsload.target.sending import error_frame, json_frame, send_plain, send_turn, start_heartbeat
from wsload.target.socketio import SocketIOWebSocket, polling_open
from wsload.target.state import STATE, Conn, Counters, TargetState

CHAT_TYPES = frozenset({"user_message", "chat_message", "message", "start_agent"})
CLOSE_NOT_READY = 1011
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
EXPIRED_REASON = b"Token expired"
TRY_AGAIN_REASON = b"Try again later"
LINGER_POLL_S = 0.25
SOCKETIO_PATH = "/ws/socket.io"
_FREEZER = PeakFreezer()  # this process's sessions, frozen out of full collections
CARRIER_CONNECT = "connect"  # a token in the Socket.IO CONNECT packet's auth payload


def build_app(
    config: TargetConfig, material: Material, *, worker_index: int = 0
) -> web.Application:
    """The application of one worker process."""
    app = web.Application(client_max_size=64 * 1024)
    app[STATE] = TargetState(config, material, worker_index=worker_index)
    for path in WS_PATHS:
        app.router.add_get(path, websocket_handler)
    if config.socketio:  # Engine.IO's paths end with "/"
        for path in (*WS_PATHS, SOCKETIO_PATH):
            app.router.add_get(path + "/", engineio_handler)
    app.router.add_get("/health", health_handler)
    app.router.add_get("/stats", stats_handler)
    app.router.add_post("/auth/login", login_handler)
    app.router.add_post("/auth/refresh", refresh_handler)
    app.router.add_post("/api/websocket/ticket", ticket_handler)
    app.on_shutdown.append(_close_sockets)
    app.on_startup.append(_start_share)
    app.on_cleanup.append(_stop_share)
    return app


async def _start_share(app: web.Application) -> None:
    share = app[STATE].share
    if share is not None:
        await share.start()


async def _stop_share(app: web.Application) -> None:
    share = app[STATE].share
    if share is not None:
        await share.stop()


async def _close_sockets(app: web.Application) -> None:
    """Close open WebSockets with 1001 so that shutdown does not wait on idle clients.

    Half-open sessions are aborted instead: they answer nothing, not even a close.
    """
    state = app[STATE]
    for conn in list(state.open):
        if conn.half_open and conn.transport is not None:
            conn.transport.abort()
    sockets = [ws for ws in state.sockets if not ws.closed]
    if sockets:
        await asyncio.gather(
            *(ws.close(code=CLOSE_GOING_AWAY, message=b"Server shutdown") for ws in sockets),
            return_exceptions=True,
        )


# HTTP ------------------------------------------------------------------------------------
async def websocket_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.json_response(
            {"detail": "WebSocket upgrade required"},
            status=426,
            headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        )
    counters = state.counters
    # admitted upgrades hold their slot from here on, so a burst cannot overshoot the limit
    admission = state.policy.admit(state.admitted)
    if admission == REFUSE_503:
        counters.rejected_max_connections += 1
        return web.json_response(
            {"detail": "Too many connections"}, status=503, headers={"Retry-After": "1"}
        )
    if admission == CLOSE_1013:
        return await _accept_and_close(request, counters)
    state.admitted += 1
    try:
        return await _upgrade(request, state)
    finally:
        state.admitted -= 1


async def engineio_handler(request: web.Request) -> web.StreamResponse:
    """``--socketio``: a WebSocket (straight, or upgrading a polling open), or a polling open."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket_handler(request)
    if request.query.get("transport") == "polling" and "sid" not in request.query:
        config = request.app[STATE].config
        return await polling_open(request, config.socketio_ping_s, config.max_message_bytes)
    return web.Response(status=400, text="Bad Request")


async def _accept_and_close(request: web.Request, counters: Counters) -> web.StreamResponse:
    """Over --max-connections with --limit-close: accept, then close 1013 at once."""
    counters.rejected_max_connections += 1
    ws = web.WebSocketResponse(compress=False, timeout=2.0)
    await ws.prepare(request)
    await ws.close(code=CLOSE_TRY_AGAIN, message=TRY_AGAIN_REASON)
    return ws


async def _upgrade(request: web.Request, state: TargetState) -> web.StreamResponse:
    """An admitted upgrade: slow handshake, upgrade-time auth, 101, then the session."""
    counters = state.counters
    plan = state.policy.for_connection()
    if plan.slow_handshake_s:
        counters.slow_handshakes += 1
        await asyncio.sleep(plan.slow_handshake_s)
        if request.transport is None or request.transport.is_closing():
            return web.Response(status=408)  # the client gave up waiting; nobody reads this
    offered = parse_subprotocols(request.headers.get("Sec-WebSocket-Protocol"))
    nego = negotiate(offered)
    creds = extract_credentials(request.headers, request.query, request.cookies, offered)
    outcome: AuthOutcome | None = None
    if plan.reject_at_upgrade:
        outcome = state.auth.authenticate(creds)
        if not outcome.accepted:
            counters.auth_rejected += 1
            counters.upgrade_rejected += 1
            return error_response(
                plan.reject_at_upgrade, "Authentication failed", reason=outcome.reason
            )
    # aiohttp answers pings and closes, except on a connection that may go half-open (_chat).
    auto = not plan.half_open_after_s
    ws = web.WebSocketResponse(
        protocols=(nego.selected,) if nego.selected else (),
        # aiohttp refuses a message of exactly max_msg_size; _chat enforces the exact limit
        max_msg_size=state.config.max_message_bytes + 1,
        compress=state.config.compression,  # permessage-deflate when the client offers it
        timeout=5.0,
        autoping=auto,
        autoclose=auto,
    )
    transport = request.transport
    await ws.prepare(request)
    counters.connections += 1
    counters.active += 1
    _FREEZER.held(counters.active)
    state.sockets.add(ws)
    try:
        if state.config.socketio and request.path.endswith("/"):
            ws, creds = await _socketio_open(ws, request, state.config, creds)
        await _session(ws, transport, state, plan, nego, creds, outcome)
    except ConnectionError:
        pass  # the client went away; nothing to report
    finally:
        counters.active -= 1
        state.sockets.discard(ws)
    return ws


async def _socketio_open(
    ws: web.WebSocketResponse, request: web.Request, config: Any, creds: Credentials
) -> tuple[Any, Credentials]:
    """The Engine.IO open and the CONNECT; a token in its auth payload is the credential."""
    framed = SocketIOWebSocket(
        ws, ping_s=config.socketio_ping_s, max_payload=config.max_message_bytes
    )
    try:
        auth = await framed.open(request.query.get("sid"))
    except TimeoutError:
        raise ConnectionError("no CONNECT") from None
    token = auth.get("token") if auth else None
    if isinstance(token, str) and token:
        creds = Credentials(CARRIER_CONNECT, token)
    return framed, creds


async def _session(
    ws: web.WebSocketResponse,
    transport: asyncio.BaseTransport | None,
    state: TargetState,
    plan: ConnectionPlan,
    nego: Negotiation,
    creds: Credentials,
    outcome: AuthOutcome | None,
) -> None:
    """One connection after the upgrade: readiness, subprotocol, auth, limits, ack, chat."""
    counters = state.counters
    if plan.not_ready:
        counters.not_ready_closed += 1
        await ws.close(code=CLOSE_NOT_READY, message=b"Service not ready")
        return
    if nego.unsupported:
        counters.subprotocol_closed += 1
        await ws.close(code=CLOSE_UNSUPPORTED, message=b"Unsupported subprotocol")
        return
    if outcome is None:
        outcome = state.auth.authenticate(creds)
    if not outcome.accepted:
        counters.auth_rejected += 1
        await ws.send_str(error_frame("AUTH_FAILED", f"Authentication failed: {outcome.reason}"))
        await ws.close(code=CLOSE_POLICY, message=b"Authentication failed")
        return
    counters.auth_ok += 1
    user_id = outcome.user_id or "anonymous"
    policy = state.policy
    per_user = state.per_user
    held = per_user.get(user_id, 0)
    if not policy.admit_user(held):
        counters.rejected_per_user += 1
        limit = policy.connections_per_user
        await ws.send_str(
            error_frame("CONNECTION_LIMIT", f"user already has {limit} open connections")
        )
        await ws.close(code=CLOSE_TRY_AGAIN, message=TRY_AGAIN_REASON)
        return
    per_user[user_id] = held + 1
    conn = Conn(ws, transport, user_id)
    try:
        if policy.close_on_expiry:
            _schedule_expiry(conn, state, outcome.expires_at)
        if plan.ack_delay_s:
            await asyncio.sleep(plan.ack_delay_s)
        if plan.send_ack:
            ack = {"user_id": user_id, "connection_id": uuid.uuid4().hex, "mode": "main"}
            await ws.send_str(json_frame("connection_established", data=ack))
        if plan.half_open_after_s:
            conn.half_open_timer = asyncio.get_running_loop().call_later(
                plan.half_open_after_s, _go_half_open, conn, counters
            )
        conn.rate = policy.rate_window()
        state.register(conn)
        await _chat(conn, state, auto=not plan.half_open_after_s)
        if conn.closer is not None:  # let the expiry close finish its closing handshake
            with contextlib.suppress(TimeoutError, ConnectionError):
                await conn.closer
    finally:
        conn.cancel()
        if conn.closer is not None:
            conn.closer.cancel()
        state.unregister(conn)
        left = per_user[user_id] - 1
        if left:
            per_user[user_id] = left
        else:
            del per_user[user_id]


def _schedule_expiry(conn: Conn, state: TargetState, expires_at: float | None) -> None:
    """(Re)arm the close at the token's expiry, when the policy closes expired sessions."""
    if conn.expiry is not None:
        conn.expiry.cancel()
        conn.expiry = None
    delay = state.policy.expiry_delay(expires_at, time.time())
    if delay is not None:
        conn.expiry = asyncio.get_running_loop().call_later(delay, _expire, conn, state)


def _expire(conn: Conn, state: TargetState) -> None:
    conn.expiry = None
    if conn.half_open or conn.ws.closed:
        return
    state.counters.expired_closed += 1
    conn.closer = asyncio.get_running_loop().create_task(
        conn.ws.close(code=CLOSE_POLICY, message=EXPIRED_REASON)
    )


def _go_half_open(conn: Conn, counters: Counters) -> None:
    conn.half_open_timer = None
    if not conn.ws.closed:
        conn.half_open = True
        if isinstance(conn.ws, SocketIOWebSocket):
            conn.ws.half_open = True  # its Engine.IO pings stop too
        counters.half_open += 1


async def _linger(conn: Conn) -> None:
    """A half-open session never answers, not even a close: wait until the peer drops TCP."""
    transport = conn.transport
    while transport is not None and not transport.is_closing():
        await asyncio.sleep(LINGER_POLL_S)


async def _chat(conn: Conn, state: TargetState, *, auto: bool) -> None:
    """Read client frames; each chat message starts a turn of its own (turns may overlap).

    ``auto`` is False for sessions that may go half-open: aiohttp then leaves pings and the
    client's close to this loop, which stops answering both once half-open.
    """
    ws = conn.ws
    loop = asyncio.get_running_loop()
    counters = state.counters
    policy = state.policy
    limit = state.config.max_message_bytes
    rate = conn.rate
    heartbeat = start_heartbeat(conn, state.config.heartbeat_s)
    try:
        while True:
            msg = await ws.receive()
            mtype = msg.type
            if mtype is WSMsgType.TEXT:
                text = msg.data
            elif mtype is WSMsgType.BINARY:
                text = msg.data.decode("utf-8", "replace")
            elif auto:
                break  # CLOSE/CLOSING/CLOSED, or ERROR (e.g. 1009 too big): aiohttp closed
            elif mtype is WSMsgType.PING:
                if not conn.half_open:
                    await ws.pong(msg.data)
                continue
            elif mtype is WSMsgType.PONG:
                continue
            elif mtype is WSMsgType.CLOSE:
                if conn.half_open:
                    await _linger(conn)
                else:
                    await ws.close()
                break
            else:
                break
            if conn.half_open:
                continue  # read and ignore: the peer only notices by its heartbeat
            received = loop.time()
            if len(text) > limit // 4 and len(text.encode()) > limit:
                await ws.close(code=CLOSE_TOO_BIG, message=b"Message too big")
                break
            counters.messages += 1
            if rate is not None and not rate.allow(received):
                counters.rate_limited += 1
                await ws.send_str(
                    error_frame(
                        "RATE_LIMITED",
                        f"more than {rate.limit} messages per minute",
                        retry_after=round(rate.retry_after(received), 3),
                    )
                )
                continue
            try:
                message = json.loads(text)
            except ValueError:
                await ws.send_str(error_frame("INVALID_JSON", "message is not valid JSON"))
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind in CHAT_TYPES:
                counters.turns += 1
                ids = correlation(conn.user_id, _thread_id(message), f"run_{uuid.uuid4().hex}")
                turn = policy.for_turn()
                if policy.plain:
                    coro = send_plain(ws, counters, turn.events, ids, received)
                else:
                    coro = send_turn(conn, state, turn, ids, received)
                if policy.instant_turns:
                    await coro
                else:
                    conn.spawn(coro)
            elif kind == "ping":
                counters.pongs += 1
                await ws.send_str(f'{{"type":"pong","timestamp":{time.time()!r}}}')
            elif kind == "pong":
                continue
            elif kind == "token_refresh":
                if not await _refresh(conn, state, message):
                    break
            else:
                counters.unknown_messages += 1
                await ws.send_str(
                    error_frame("UNKNOWN_MESSAGE_TYPE", f"unknown message type: {kind!r}"[:200])
                )
    finally:
        if heartbeat is not None:
            heartbeat.cancel()


async def _refresh(conn: Conn, state: TargetState, message: dict[str, Any]) -> bool:
    """In-band token refresh; False when it failed and the session was closed 1008."""
    payload = message.get("payload")
    token = payload.get("token") if isinstance(payload, dict) else message.get("token")
    expires_at, error = state.auth.refresh(conn.user_id, token)
    if error is not None:
        state.counters.in_band_refresh_failed += 1
        await conn.ws.send_str(error_frame("AUTH_FAILED", f"Token refresh failed: {error}"))
        await conn.ws.close(code=CLOSE_POLICY, message=b"Token refresh failed")
        return False
    state.counters.in_band_refreshes += 1
    _schedule_expiry(conn, state, expires_at)
    await conn.ws.send_str(json_frame("token_refreshed", expires_at=expires_at))
    return True


def _thread_id(message: dict[str, Any]) -> str:
    payload = message.get("payload")
    thread = payload.get("thread_id") if isinstance(payload, dict) else None
    thread = thread or message.get("thread_id")
    return str(thread) if thread else f"thread_{uuid.uuid4().hex[:16]}"


class _HideClientProtocols(logging.Filter):
    """aiohttp logs offered subprotocols it does not know; they carry tokens, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Client protocols" not in str(record.msg)


def quiet_token_logs() -> None:
    """Keep tokens out of logs: install the filter above once per process."""
    ws_logger = logging.getLogger("aiohttp.websocket")
    if not any(isinstance(f, _HideClientProtocols) for f in ws_logger.filters):
        ws_logger.addFilter(_HideClientProtocols())
