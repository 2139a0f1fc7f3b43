"""What a target process holds: its counters, its open connections, its configuration and
key material, shared by the HTTP and the WebSocket handlers."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from wsload.config.profile import TokenSpec
from wsload.config.tokens import TokenMinter
from wsload.run.memory import memory_kb
from wsload.target.agent import (
    HOSTILE_KINDS,
)
from wsload.target.auth import (
    Authenticator,
    Tickets,
    TokenValidator,
)
from wsload.target.config import Material, TargetConfig
from wsload.target.policy import (
    Policy,
    RateWindow,
)
from wsload.target.stats import StatsShare


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
        self.minter = login_minter(config, material)
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


def login_minter(config: TargetConfig, material: Material) -> TokenMinter | None:
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


def stats_snapshot(state: TargetState) -> dict[str, Any]:
    """This process's ``/stats`` answer."""
    return {
        "scope": "process",
        "pid": state.pid,
        "worker": state.worker_index,
        "workers": state.config.workers,
        "uptime_s": round(time.time() - state.started, 3),
        "memory_kb": memory_kb(),  # PSS: summed over workers, shared pages count once
        "counters": asdict(state.counters),
    }
