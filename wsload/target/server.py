"""The aiohttp application of the reference target: WebSocket chat plus the HTTP auth API.

Handlers only do I/O: what the token is and whether it is valid comes from ``auth``, how a
turn looks from ``agent`` via ``policy``. Hot paths (ack, events, pong) build JSON text
directly and nothing is logged per connection or per event; the access log is off because
request lines carry tokens in query strings. Counters are per process and served by /health.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import WSMsgType, web

from wsload.profile import TokenSpec
from wsload.target.agent import EncodedEvent, correlation, render
from wsload.target.auth import (
    Authenticator,
    AuthError,
    AuthOutcome,
    Credentials,
    Negotiation,
    Tickets,
    TokenValidator,
    bearer_token,
    extract_credentials,
    negotiate,
    parse_subprotocols,
)
from wsload.target.config import WS_PATHS, Material, TargetConfig
from wsload.target.policy import ConnectionPlan, Policy
from wsload.tokens import TokenMinter

log = logging.getLogger("wsload.target")

CHAT_TYPES = frozenset({"user_message", "chat_message", "message", "start_agent"})
CLOSE_NOT_READY = 1011
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009


@dataclass
class Counters:
    """Per-process counters shown by /health (plain ints: one event loop, no locks)."""

    connections: int = 0
    active: int = 0
    auth_ok: int = 0
    auth_rejected: int = 0
    upgrade_rejected: int = 0
    not_ready_closed: int = 0
    subprotocol_closed: int = 0
    messages: int = 0
    turns: int = 0
    events_sent: int = 0
    pongs: int = 0
    unknown_messages: int = 0
    logins: int = 0
    login_failed: int = 0
    refreshes: int = 0
    refresh_failed: int = 0
    tickets_issued: int = 0


class TargetState:
    """Everything the handlers of one worker share, built once at startup."""

    def __init__(self, config: TargetConfig, material: Material, *, worker_index: int = 0) -> None:
        self.config = config
        self.worker_index = worker_index
        self.pid = os.getpid()
        self.started = time.time()
        self.counters = Counters()
        self.policy = Policy(config, worker_index=worker_index)
        validator = TokenValidator(
            material.verify,
            config.algorithm,
            issuer=config.issuer,
            audience=config.audience,
            token_type=config.token_type,
        )
        tickets = Tickets(material.ticket, config.ticket_ttl_s)
        self.auth = Authenticator(config.auth_mode, validator, tickets)
        self.users = material.users
        self.minter = _login_minter(config, material)
        self.sockets: set[web.WebSocketResponse] = set()


def _login_minter(config: TargetConfig, material: Material) -> TokenMinter | None:
    """Mints what /auth/login hands out; None when the target holds no signing key."""
    if material.sign is None:
        return None
    claims = {**config.token_claims, "token_type": config.token_type, "type": config.token_type}
    spec = TokenSpec(
        algorithm=config.algorithm,
        issuer=config.issuer,
        audience=config.audience,
        lifetime_s=config.access_lifetime_s,
        claims=claims,
    )
    # Built from the same options load_material checked, so this cannot fail now.
    return TokenMinter(spec, secret=config.jwt_secret, key_file=config.jwt_private_key)


STATE = web.AppKey("wsload_target_state", TargetState)


def build_app(
    config: TargetConfig, material: Material, *, worker_index: int = 0
) -> web.Application:
    """The application of one worker process."""
    app = web.Application(client_max_size=64 * 1024)
    app[STATE] = TargetState(config, material, worker_index=worker_index)
    for path in WS_PATHS:
        app.router.add_get(path, websocket_handler)
    app.router.add_get("/health", health_handler)
    app.router.add_post("/auth/login", login_handler)
    app.router.add_post("/auth/refresh", refresh_handler)
    app.router.add_post("/api/websocket/ticket", ticket_handler)
    app.on_shutdown.append(_close_sockets)
    return app


async def _close_sockets(app: web.Application) -> None:
    """Close open WebSockets with 1001 so that shutdown does not wait on idle clients."""
    sockets = list(app[STATE].sockets)
    if sockets:
        await asyncio.gather(
            *(ws.close(code=CLOSE_GOING_AWAY, message=b"Server shutdown") for ws in sockets),
            return_exceptions=True,
        )


# HTTP ------------------------------------------------------------------------------------
async def health_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, Any] = {
        "status": "healthy",
        "pid": state.pid,
        "worker": state.worker_index,
        "uptime_s": round(time.time() - state.started, 3),
        "auth_mode": state.config.auth_mode,
        **asdict(state.counters),
        "config": state.config.summary(),
    }
    return web.json_response(body)


def _error(status: int, detail: str, **extra: Any) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response({"detail": detail, **extra}, status=status, headers=headers)


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _token_pair(state: TargetState, subject: str) -> dict[str, Any]:
    minter = state.minter
    assert minter is not None
    config = state.config
    access = minter.mint(subject, overrides={"email": subject})
    refresh = minter.mint(
        subject,
        lifetime_s=config.refresh_lifetime_s,
        overrides={"email": subject, "token_type": "refresh", "type": "refresh"},
    )
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": round(config.access_lifetime_s),
        "user": {"id": subject, "email": subject},
    }


def _no_signing_key() -> web.Response:
    return _error(
        501, "this target holds no signing key: start it with --jwt-private-key to log in"
    )


async def login_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    if body is None or not isinstance(body.get("email"), str) or "password" not in body:
        return _error(422, "body must be JSON with 'email' and 'password'")
    if state.minter is None:
        return _no_signing_key()
    email, password = body["email"].strip(), body["password"]
    if state.users is not None:
        ok = email in state.users and state.users[email] == password
    else:
        ok = bool(email) and password == state.config.login_password
    if not ok:
        state.counters.login_failed += 1
        return _error(401, "Invalid email or password")
    state.counters.logins += 1
    return web.json_response(_token_pair(state, email))


async def refresh_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    if body is None or not isinstance(body.get("refresh_token"), str):
        return _error(422, "body must be JSON with 'refresh_token'")
    if state.minter is None:
        return _no_signing_key()
    try:
        claims = state.auth.validator.validate(body["refresh_token"], token_type="refresh")
    except AuthError as exc:
        state.counters.refresh_failed += 1
        return _error(401, "Invalid refresh token", reason=exc.reason)
    state.counters.refreshes += 1
    return web.json_response(_token_pair(state, claims["sub"]))


async def ticket_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return _error(401, "Authorization: Bearer <access token> required")
    try:
        subject = state.auth.validator.validate(token)["sub"]
    except AuthError as exc:
        return _error(401, "Invalid access token", reason=exc.reason)
    state.counters.tickets_issued += 1
    ticket = state.auth.tickets.issue(subject)
    return web.json_response({"ticket": ticket, "expires_in": round(state.auth.tickets.ttl_s)})


# WebSocket -------------------------------------------------------------------------------
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _frame(kind: str, **fields: Any) -> str:
    return _encode({"type": kind, **fields, "timestamp": time.time()})


def _error_frame(code: str, message: str) -> str:
    return _frame("error_message", error_code=code, error_message=message)


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.json_response(
            {"detail": "WebSocket upgrade required"},
            status=426,
            headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        )
    plan = state.policy.for_connection()
    offered = parse_subprotocols(request.headers.get("Sec-WebSocket-Protocol"))
    nego = negotiate(offered)
    creds = extract_credentials(request.headers, request.query, request.cookies, offered)
    outcome: AuthOutcome | None = None
    if plan.reject_at_upgrade:
        outcome = state.auth.authenticate(creds)
        if not outcome.accepted:
            state.counters.auth_rejected += 1
            state.counters.upgrade_rejected += 1
            return _error(plan.reject_at_upgrade, "Authentication failed", reason=outcome.reason)
    ws = web.WebSocketResponse(
        protocols=(nego.selected,) if nego.selected else (),
        # aiohttp refuses a message of exactly max_msg_size; _chat enforces the exact limit
        max_msg_size=state.config.max_message_bytes + 1,
        compress=False,
        timeout=5.0,
    )
    await ws.prepare(request)
    state.counters.connections += 1
    state.counters.active += 1
    state.sockets.add(ws)
    try:
        await _session(ws, state, plan, nego, creds, outcome)
    except ConnectionError:
        pass  # the client went away; nothing to report
    finally:
        state.counters.active -= 1
        state.sockets.discard(ws)
    return ws


async def _session(
    ws: web.WebSocketResponse,
    state: TargetState,
    plan: ConnectionPlan,
    nego: Negotiation,
    creds: Credentials,
    outcome: AuthOutcome | None,
) -> None:
    """One connection after the upgrade: readiness, subprotocol, auth, ack, then chat."""
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
        await ws.send_str(_error_frame("AUTH_FAILED", f"Authentication failed: {outcome.reason}"))
        await ws.close(code=CLOSE_POLICY, message=b"Authentication failed")
        return
    counters.auth_ok += 1
    user_id = outcome.user_id or "anonymous"
    if plan.ack_delay_s:
        await asyncio.sleep(plan.ack_delay_s)
    if plan.send_ack:
        ack = {"user_id": user_id, "connection_id": uuid.uuid4().hex, "mode": "main"}
        await ws.send_str(_frame("connection_established", data=ack))
    await _chat(ws, state, user_id)


async def _chat(ws: web.WebSocketResponse, state: TargetState, user_id: str) -> None:
    """Read client frames; each chat message starts a turn of its own (turns may overlap)."""
    loop = asyncio.get_running_loop()
    counters = state.counters
    policy = state.policy
    limit = state.config.max_message_bytes
    turns: set[asyncio.Task[None]] = set()
    heartbeat = _start_heartbeat(ws, state.config.heartbeat_s)
    try:
        async for msg in ws:
            received = loop.time()
            if msg.type is WSMsgType.TEXT:
                text = msg.data
            elif msg.type is WSMsgType.BINARY:
                text = msg.data.decode("utf-8", "replace")
            else:
                break  # ERROR (e.g. 1009 too big): aiohttp has already closed
            if len(text) > limit // 4 and len(text.encode()) > limit:
                await ws.close(code=CLOSE_TOO_BIG, message=b"Message too big")
                break
            counters.messages += 1
            try:
                message = json.loads(text)
            except ValueError:
                await ws.send_str(_error_frame("INVALID_JSON", "message is not valid JSON"))
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind in CHAT_TYPES:
                counters.turns += 1
                ids = correlation(user_id, _thread_id(message), f"run_{uuid.uuid4().hex}")
                events = policy.for_turn()
                if policy.instant_turns:
                    await _send_turn(ws, counters, events, ids, received)
                else:
                    task = loop.create_task(_send_turn(ws, counters, events, ids, received))
                    turns.add(task)
                    task.add_done_callback(turns.discard)
            elif kind == "ping":
                counters.pongs += 1
                await ws.send_str(f'{{"type":"pong","timestamp":{time.time()!r}}}')
            elif kind == "pong":
                continue
            else:
                counters.unknown_messages += 1
                await ws.send_str(
                    _error_frame("UNKNOWN_MESSAGE_TYPE", f"unknown message type: {kind!r}"[:200])
                )
    finally:
        for task in turns:
            task.cancel()
        if heartbeat is not None:
            heartbeat.cancel()


def _thread_id(message: dict[str, Any]) -> str:
    payload = message.get("payload")
    thread = payload.get("thread_id") if isinstance(payload, dict) else None
    thread = thread or message.get("thread_id")
    return str(thread) if thread else f"thread_{uuid.uuid4().hex[:16]}"


async def _send_turn(
    ws: web.WebSocketResponse,
    counters: Counters,
    events: tuple[EncodedEvent, ...],
    ids: str,
    t0: float,
) -> None:
    """Send each event at its absolute offset from message receipt (no drift from sleeps)."""
    loop = asyncio.get_running_loop()
    try:
        for event in events:
            delay = t0 + event.offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send_str(render(event, time.time(), ids))
            counters.events_sent += 1
    except ConnectionError:
        pass  # closed mid-turn; the connection's own handler winds down


def _start_heartbeat(ws: web.WebSocketResponse, interval: float) -> asyncio.Task[None] | None:
    if interval <= 0:
        return None
    return asyncio.get_running_loop().create_task(_heartbeat(ws, interval))


async def _heartbeat(ws: web.WebSocketResponse, interval: float) -> None:
    """Server heartbeats at a fixed interval, as the backend sends when a client is idle."""
    try:
        while not ws.closed:
            await asyncio.sleep(interval)
            await ws.send_str(_frame("heartbeat"))
    except ConnectionError:
        pass


class _HideClientProtocols(logging.Filter):
    """aiohttp logs offered subprotocols it does not know; they carry tokens, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Client protocols" not in str(record.msg)


def quiet_token_logs() -> None:
    """Keep tokens out of logs: install the filter above once per process."""
    ws_logger = logging.getLogger("aiohttp.websocket")
    if not any(isinstance(f, _HideClientProtocols) for f in ws_logger.filters):
        ws_logger.addFilter(_HideClientProtocols())
