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
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from wsload.config.profile import TokenSpec
from wsload.config.tokens import TokenMinter
from wsload.target.agent import (
    HOSTILE_KINDS,
    EncodedEvent,
    correlation,
    hostile_frames,
    render,
)
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
from wsload.target.policy import (
    CLOSE_1013,
    COUNT,
    DROP,
    DUPLICATE,
    REFUSE_503,
    ConnectionPlan,
    Policy,
    RateWindow,
    TurnPlan,
)
from wsload.target.stats import StatsShare, aggregate

log = logging.getLogger("wsload.target")

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
LEAK_TRIES = 4


@dataclass
class Counters:
    """Per-process counters shown by /health and /stats (plain ints: one event loop, no locks).

    Injected faults are counted when they reach the wire (a fault planned for a turn that
    was cut short first is not counted), so they can be compared with what a client saw.
    """

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
    # turns: turns == completed + error_events + aborted once all have ended
    turns_completed: int = 0  # ended with agent_completed
    turns_aborted: int = 0  # cut short: connection closed, dropped or gone half-open
    active_turns: int = 0  # gauge: turns being sent now
    overloaded_turns: int = 0  # started while more than --capacity turns ran
    # session lifecycle
    expired_closed: int = 0  # closed 1008 "Token expired" (--close-on-expiry)
    in_band_refreshes: int = 0  # token_refresh accepted
    in_band_refresh_failed: int = 0  # token_refresh rejected: error frame + 1008
    # limits
    rejected_max_connections: int = 0  # --max-connections: 503 or 1013
    rejected_per_user: int = 0  # --connections-per-user: error frame + 1013
    rate_limited: int = 0  # --messages-per-minute: RATE_LIMITED error frames
    # injected faults
    leaked_events: int = 0  # copies sent to another user's connection
    leak_no_target: int = 0  # a leak was drawn but no other user's connection was open
    dropped_connections: int = 0  # TCP aborted mid-turn, no close frame
    skipped_events: int = 0
    reordered_events: int = 0  # adjacent swaps
    duplicated_events: int = 0  # byte-identical resends
    duplicated_terminal_events: int = 0  # terminal events sent twice
    error_events: int = 0  # turns ended with agent_error
    slow_handshakes: int = 0  # upgrades answered after --slow-handshake
    half_open: int = 0  # connections that stopped answering
    hostile_frames: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOSTILE_KINDS, 0))


class Conn:
    """One authenticated WebSocket session: what the policy's decisions act on."""

    __slots__ = (
        "closer",
        "expiry",
        "half_open",
        "half_open_timer",
        "rate",
        "slot",
        "tasks",
        "transport",
        "user_id",
        "ws",
    )

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, user_id: str
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.user_id = user_id
        self.slot = -1  # index in TargetState.open while chatting
        self.half_open = False
        self.half_open_timer: asyncio.TimerHandle | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.closer: asyncio.Task[bool] | None = None  # the close at expiry, once started
        self.rate: RateWindow | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel(self) -> None:
        for timer in (self.expiry, self.half_open_timer):
            if timer is not None:
                timer.cancel()
        for task in list(self.tasks):
            task.cancel()


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
        self.open: list[Conn] = []  # acked sessions, for picking where a leaked event goes
        self.per_user: dict[str, int] = {}
        self.admitted = 0  # upgrades past --max-connections' check and not yet finished
        self.share: StatsShare | None = None
        if config.stats_dir:
            self.share = StatsShare(config.stats_dir, worker_index, lambda: stats_snapshot(self))

    def register(self, conn: Conn) -> None:
        conn.slot = len(self.open)
        self.open.append(conn)

    def unregister(self, conn: Conn) -> None:
        if conn.slot < 0:
            return
        last = self.open.pop()
        if last is not conn:
            self.open[conn.slot] = last
            last.slot = conn.slot
        conn.slot = -1


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


def stats_snapshot(state: TargetState) -> dict[str, Any]:
    """This process's ``/stats`` answer."""
    return {
        "scope": "process",
        "pid": state.pid,
        "worker": state.worker_index,
        "workers": state.config.workers,
        "uptime_s": round(time.time() - state.started, 3),
        "counters": asdict(state.counters),
    }


async def stats_handler(request: web.Request) -> web.Response:
    """``GET /stats``: this process's counters; ``?all=1``: summed over every worker."""
    state = request.app[STATE]
    own = stats_snapshot(state)
    if request.query.get("all", "0").lower() in ("", "0", "false", "no"):
        return web.json_response(own)
    others = await state.share.collect() if state.share is not None else []
    return web.json_response(aggregate(own, others))


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
        claims = state.auth.validator.validate(token)
    except AuthError as exc:
        return _error(401, "Invalid access token", reason=exc.reason)
    state.counters.tickets_issued += 1
    ticket = state.auth.tickets.issue(claims["sub"], token_exp=claims.get("exp"))
    return web.json_response({"ticket": ticket, "expires_in": round(state.auth.tickets.ttl_s)})


# WebSocket -------------------------------------------------------------------------------
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _frame(kind: str, **fields: Any) -> str:
    return _encode({"type": kind, **fields, "timestamp": time.time()})


def _error_frame(code: str, message: str, **fields: Any) -> str:
    return _frame("error_message", error_code=code, error_message=message, **fields)


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
            return _error(plan.reject_at_upgrade, "Authentication failed", reason=outcome.reason)
    # aiohttp answers pings and closes, except on a connection that may go half-open (_chat).
    auto = not plan.half_open_after_s
    ws = web.WebSocketResponse(
        protocols=(nego.selected,) if nego.selected else (),
        # aiohttp refuses a message of exactly max_msg_size; _chat enforces the exact limit
        max_msg_size=state.config.max_message_bytes + 1,
        compress=False,
        timeout=5.0,
        autoping=auto,
        autoclose=auto,
    )
    transport = request.transport
    await ws.prepare(request)
    counters.connections += 1
    counters.active += 1
    state.sockets.add(ws)
    try:
        await _session(ws, transport, state, plan, nego, creds, outcome)
    except ConnectionError:
        pass  # the client went away; nothing to report
    finally:
        counters.active -= 1
        state.sockets.discard(ws)
    return ws


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
        await ws.send_str(_error_frame("AUTH_FAILED", f"Authentication failed: {outcome.reason}"))
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
            _error_frame("CONNECTION_LIMIT", f"user already has {limit} open connections")
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
            await ws.send_str(_frame("connection_established", data=ack))
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
    heartbeat = _start_heartbeat(conn, state.config.heartbeat_s)
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
                    _error_frame(
                        "RATE_LIMITED",
                        f"more than {rate.limit} messages per minute",
                        retry_after=round(rate.retry_after(received), 3),
                    )
                )
                continue
            try:
                message = json.loads(text)
            except ValueError:
                await ws.send_str(_error_frame("INVALID_JSON", "message is not valid JSON"))
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind in CHAT_TYPES:
                counters.turns += 1
                ids = correlation(conn.user_id, _thread_id(message), f"run_{uuid.uuid4().hex}")
                turn = policy.for_turn()
                if policy.plain:
                    coro = _send_plain(ws, counters, turn.events, ids, received)
                else:
                    coro = _send_turn(conn, state, turn, ids, received)
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
                    _error_frame("UNKNOWN_MESSAGE_TYPE", f"unknown message type: {kind!r}"[:200])
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
        await conn.ws.send_str(_error_frame("AUTH_FAILED", f"Token refresh failed: {error}"))
        await conn.ws.close(code=CLOSE_POLICY, message=b"Token refresh failed")
        return False
    state.counters.in_band_refreshes += 1
    _schedule_expiry(conn, state, expires_at)
    await conn.ws.send_str(_frame("token_refreshed", expires_at=expires_at))
    return True


def _thread_id(message: dict[str, Any]) -> str:
    payload = message.get("payload")
    thread = payload.get("thread_id") if isinstance(payload, dict) else None
    thread = thread or message.get("thread_id")
    return str(thread) if thread else f"thread_{uuid.uuid4().hex[:16]}"


async def _send_plain(
    ws: web.WebSocketResponse,
    counters: Counters,
    events: tuple[EncodedEvent, ...],
    ids: str,
    t0: float,
) -> None:
    """Send each event at its absolute offset from message receipt (no drift from sleeps).

    The path of a target without fault knobs: nothing is checked per event.
    """
    loop = asyncio.get_running_loop()
    counters.active_turns += 1
    done = False
    try:
        for event in events:
            delay = t0 + event.offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send_str(render(event, time.time(), ids))
            counters.events_sent += 1
        done = True
        counters.turns_completed += 1
    except ConnectionError:
        pass  # closed mid-turn; the connection's own handler winds down
    finally:
        counters.active_turns -= 1
        if not done:
            counters.turns_aborted += 1


async def _send_turn(conn: Conn, state: TargetState, turn: TurnPlan, ids: str, t0: float) -> None:
    """``_send_plain`` with the policy's faults, leaks, overload and half-open carried out."""
    loop = asyncio.get_running_loop()
    ws = conn.ws
    counters = state.counters
    policy = state.policy
    leak = policy.leak_fraction
    capacity = policy.capacity
    after = turn.after
    extra = 0.0
    counters.active_turns += 1
    if capacity and counters.active_turns > capacity:
        counters.overloaded_turns += 1
    done = False
    try:
        for index, event in enumerate(turn.events):
            delay = t0 + event.offset + extra - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if capacity:  # the delay just ended: stretch it by the load at this moment
                over = policy.overload_s(counters.active_turns)
                if over:
                    extra += over
                    await asyncio.sleep(over)
            if conn.half_open:
                return
            text = render(event, time.time(), ids)
            await ws.send_str(text)
            counters.events_sent += 1
            if leak and policy.leak():
                await _leak(state, conn, text)
            actions = after.get(index) if after is not None else None
            if actions is None:
                continue
            for action, arg in actions:
                if action == COUNT:
                    setattr(counters, arg, getattr(counters, arg) + 1)
                elif action == DUPLICATE:  # arg: which counter (mid-turn or terminal)
                    await ws.send_str(text)
                    counters.events_sent += 1
                    setattr(counters, arg, getattr(counters, arg) + 1)
                elif action == DROP:
                    if conn.transport is not None and not conn.transport.is_closing():
                        counters.dropped_connections += 1
                        conn.transport.abort()  # no close frame; the reader sees it go
                    return
                else:  # HOSTILE
                    await _send_hostile(ws, counters, arg, ids)
        done = True
        if not turn.errored:
            counters.turns_completed += 1
    except ConnectionError:
        pass  # closed mid-turn; the connection's own handler winds down
    finally:
        counters.active_turns -= 1
        if not done:
            counters.turns_aborted += 1


async def _send_hostile(ws: web.WebSocketResponse, counters: Counters, kind: str, ids: str) -> None:
    for frame in hostile_frames(kind, time.time(), ids):
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
    counters.hostile_frames[kind] += 1


async def _leak(state: TargetState, sender: Conn, text: str) -> None:
    """Send a copy of ``text`` (the sender's ids kept) to another user's open session."""
    other = _leak_target(state, sender)
    if other is None:
        state.counters.leak_no_target += 1
        return
    try:
        await other.ws.send_str(text)
    except ConnectionError:
        state.counters.leak_no_target += 1
        return
    state.counters.leaked_events += 1


def _leak_target(state: TargetState, sender: Conn) -> Conn | None:
    conns = state.open
    count = len(conns)
    if count < 2:
        return None
    pick = state.policy.pick

    def fits(conn: Conn) -> bool:
        return conn.user_id != sender.user_id and not conn.half_open and not conn.ws.closed

    for _ in range(LEAK_TRIES):
        conn = conns[pick(count)]
        if fits(conn):
            return conn
    start = pick(count)  # mostly one user's sessions: look at each once
    return next(
        (conns[(start + i) % count] for i in range(count) if fits(conns[(start + i) % count])),
        None,
    )


def _start_heartbeat(conn: Conn, interval: float) -> asyncio.Task[None] | None:
    if interval <= 0:
        return None
    return asyncio.get_running_loop().create_task(_heartbeat(conn, interval))


async def _heartbeat(conn: Conn, interval: float) -> None:
    """Server heartbeats at a fixed interval, as the backend sends when a client is idle."""
    ws = conn.ws
    with contextlib.suppress(ConnectionError):
        while not ws.closed and not conn.half_open:
            await asyncio.sleep(interval)
            if not conn.half_open:
                await ws.send_str(_frame("heartbeat"))


class _HideClientProtocols(logging.Filter):
    """aiohttp logs offered subprotocols it does not know; they carry tokens, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Client protocols" not in str(record.msg)


def quiet_token_logs() -> None:
    """Keep tokens out of logs: install the filter above once per process."""
    ws_logger = logging.getLogger("aiohttp.websocket")
    if not any(isinstance(f, _HideClientProtocols) for f in ws_logger.filters):
        ws_logger.addFilter(_HideClientProtocols())
