"""Every knob of the reference target in one frozen dataclass, validated before any bind.

The command line builds a ``TargetConfig``; ``validate()`` and ``load_material()`` run in the
parent process so that a bad option or an unreadable key stops the start with one clear
``ConfigError`` (exit 2), never a traceback from inside a worker. Fault knobs are fields here
and are read only by the per-connection and per-turn policy (``policy.py``); every one of
them is off by default, and off costs nothing per event.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field, fields, replace
from typing import Any

from wsload.config.profile import ALGORITHMS, TokenSpec
from wsload.config.tokens import SECRET_ENV, load_credentials, load_signing_key, load_verifying_key
from wsload.errors import ConfigError
from wsload.target.agent import HOSTILE_KINDS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
WS_PATHS = ("/ws", "/api/v1/websocket")
AUTH_MODES = ("enforce", "demo", "relaxed", "off")
UPGRADE_REJECT_STATUSES = (401, 403)
DEMO_USER = "demo-user-001"
DEFAULT_LOGIN_PASSWORD = "wsload-demo"
DEFAULT_CONNECTIONS_PER_USER = 10


@dataclass(frozen=True)
class TargetConfig:
    """What the target does; defaults speak docs/PROTOCOL.md with a well-behaved agent."""

    # serving
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    compression: bool = True  # accept permessage-deflate when a client offers it
    tls_cert: str | None = None  # PEM: serve wss:// (with tls_key, unless in the same file)
    tls_key: str | None = None
    tls_client_ca: str | None = None  # PEM: require client certificates it signed (mTLS)
    # tokens (defaults: the default profile's [token] table)
    algorithm: str = "HS256"
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = None
    jwt_private_key: str | None = None
    issuer: str = "netra-auth-service"
    audience: str = "netra-platform"
    token_type: str = "access"
    token_claims: dict[str, Any] = field(default_factory=dict)
    access_lifetime_s: float = 900.0
    refresh_lifetime_s: float = 7 * 24 * 3600.0
    ticket_ttl_s: float = 30.0
    # a key only for tickets, shared by all workers; derived from the secret when there is one
    ticket_key: bytes = field(default=b"", repr=False)
    # login
    login_password: str = field(default=DEFAULT_LOGIN_PASSWORD, repr=False)
    users_file: str | None = None
    # auth behaviour
    auth_mode: str = "enforce"
    reject_at_upgrade: int | None = None
    not_ready: bool = False
    ack_delay_s: float = 0.0
    no_ack: bool = False
    # agent turn
    ttfe_s: float = 0.05
    gap_s: float = 0.01
    thinking_steps: int = 2
    tools: int = 1
    tool_duration_s: float | None = None
    stream_tokens: int = 0
    token_interval_s: float | None = None
    jitter: float = 0.0
    seed: int | None = None
    # limits and liveness
    max_message_bytes: int = 8192
    heartbeat_s: float = 0.0
    max_connections: int = 0  # per process; 0: unlimited
    limit_close: bool = False  # over max_connections: accept, close 1013 (else HTTP 503)
    connections_per_user: int = DEFAULT_CONNECTIONS_PER_USER  # per process; 0: unlimited
    messages_per_minute: int = 0  # per connection; 0: unlimited
    # session lifecycle
    close_on_expiry: bool = False
    # isolation
    leak_fraction: float = 0.0
    # capacity: past `capacity` concurrent turns every delay grows (see policy.overload_s)
    capacity: int = 0
    overload_delay_s: float = 0.0
    # faults: fractions of turns (or connections) drawn from the seeded generator
    drop_mid_turn: float = 0.0
    skip_events: float = 0.0
    reorder_events: float = 0.0
    duplicate_events: float = 0.0
    duplicate_terminal: float = 0.0
    error_events: float = 0.0
    hostile: float = 0.0
    hostile_kinds: tuple[str, ...] = HOSTILE_KINDS
    slow_handshake_s: float = 0.0
    slow_handshake_fraction: float = 1.0
    half_open_after_s: float = 0.0
    half_open_fraction: float = 1.0
    # where the workers of one target share their counters (set by the parent, not an option)
    stats_dir: str | None = None

    @property
    def scheme(self) -> str:
        return "wss" if self.tls_cert else "ws"

    @classmethod
    def from_token_spec(cls, spec: TokenSpec, **overrides: Any) -> TargetConfig:
        """A config whose token checks follow a profile's ``[token]`` table."""
        base = cls(
            algorithm=spec.algorithm,
            issuer=spec.issuer,
            audience=spec.audience,
            token_type=str(spec.claims.get("token_type", "access")),
            token_claims=dict(spec.claims),
            access_lifetime_s=spec.lifetime_s,
        )
        return replace(base, **overrides)

    def resolved_secret(self) -> str | None:
        """The HS secret: the option, else ``JWT_SECRET_KEY`` (None for RS/ES)."""
        if not self.algorithm.startswith("HS"):
            return self.jwt_secret
        return self.jwt_secret if self.jwt_secret else os.environ.get(SECRET_ENV) or None

    def validate(self) -> TargetConfig:
        """Check ranges and combinations; return a copy with the secret and ticket key resolved."""
        _check(0 <= self.port <= 65535, "--port", f"{self.port} is not a TCP port", "0..65535")
        _check(1 <= self.workers <= 64, "--workers", f"got {self.workers}", "use 1..64")
        _check(
            self.algorithm in ALGORITHMS,
            "--algorithm",
            f"{self.algorithm!r} is not supported",
            f"use one of {', '.join(ALGORITHMS)}",
        )
        _check(
            self.auth_mode in AUTH_MODES,
            "--auth-mode",
            f"{self.auth_mode!r} is unknown",
            f"use one of {', '.join(AUTH_MODES)}",
        )
        _check(
            self.reject_at_upgrade in (None, *UPGRADE_REJECT_STATUSES),
            "--reject-at-upgrade",
            f"{self.reject_at_upgrade} is not supported",
            "use 401 or 403",
        )
        for option, value in (
            ("--ack-delay", self.ack_delay_s),
            ("--ttfe", self.ttfe_s),
            ("--gap", self.gap_s),
            ("--tool-duration", self.tool_duration_s or 0.0),
            ("--token-interval", self.token_interval_s or 0.0),
            ("--heartbeat", self.heartbeat_s),
            ("--overload-delay", self.overload_delay_s),
            ("--slow-handshake", self.slow_handshake_s),
            ("--half-open-after", self.half_open_after_s),
        ):
            _check(value >= 0, option, f"must not be negative, got {value}", "give seconds >= 0")
        for option, value in (
            ("--token-lifetime", self.access_lifetime_s),
            ("--refresh-lifetime", self.refresh_lifetime_s),
            ("--ticket-ttl", self.ticket_ttl_s),
        ):
            _check(value > 0, option, f"must be positive, got {value}", "give seconds > 0")
        _check(
            0 <= self.thinking_steps <= 1000,
            "--thinking-steps",
            f"got {self.thinking_steps}",
            "use 0..1000",
        )
        _check(0 <= self.tools <= 1000, "--tools", f"got {self.tools}", "use 0..1000")
        _check(
            0 <= self.stream_tokens <= 10000,
            "--stream-tokens",
            f"got {self.stream_tokens}",
            "use 0..10000",
        )
        for option, value in (
            ("--jitter", self.jitter),
            ("--leak-fraction", self.leak_fraction),
            ("--drop-mid-turn", self.drop_mid_turn),
            ("--skip-events", self.skip_events),
            ("--reorder-events", self.reorder_events),
            ("--duplicate-events", self.duplicate_events),
            ("--duplicate-terminal", self.duplicate_terminal),
            ("--error-events", self.error_events),
            ("--hostile", self.hostile),
            ("--slow-handshake-fraction", self.slow_handshake_fraction),
            ("--half-open-fraction", self.half_open_fraction),
        ):
            _check(0 <= value <= 1, option, f"got {value}", "use a fraction in 0..1")
        for option, count in (
            ("--max-connections", self.max_connections),
            ("--connections-per-user", self.connections_per_user),
            ("--messages-per-minute", self.messages_per_minute),
            ("--capacity", self.capacity),
        ):
            _check(count >= 0, option, f"got {count}", "use 0 (off) or a positive count")
        _check(
            (self.capacity > 0) == (self.overload_delay_s > 0),
            "--capacity" if self.overload_delay_s > 0 else "--overload-delay",
            "--capacity N and --overload-delay S only work together",
            "give both, e.g. --capacity 50 --overload-delay 0.05",
        )
        _check(
            not self.limit_close or self.max_connections > 0,
            "--limit-close",
            "only changes how --max-connections rejects",
            "add --max-connections N",
        )
        unknown = [kind for kind in self.hostile_kinds if kind not in HOSTILE_KINDS]
        _check(
            bool(self.hostile_kinds) and not unknown,
            "--hostile-kinds",
            f"unknown kind {unknown[0]!r}" if unknown else "no kind given",
            f"use a comma-separated subset of {','.join(HOSTILE_KINDS)}",
        )
        _check(
            self.max_message_bytes >= 64,
            "--max-message-bytes",
            f"got {self.max_message_bytes}",
            "use at least 64 bytes",
        )
        _check(bool(self.login_password), "--login-password", "is empty", "give a password")
        _check(
            self.tls_cert is not None or (self.tls_key is None and self.tls_client_ca is None),
            "--tls-key" if self.tls_key else "--tls-client-ca",
            "only works with --tls-cert",
            "add --tls-cert PEM",
        )
        if self.tls_cert:
            from wsload.net.tls import server_context

            server_context(self.tls_cert, self.tls_key, self.tls_client_ca)  # bad files stop here
        secret = self.resolved_secret()
        ticket_key = self.ticket_key or _ticket_key(secret)
        return replace(self, jwt_secret=secret, ticket_key=ticket_key)

    def summary(self) -> dict[str, Any]:
        """The knobs as plain data for /health and logs: no secret, no key material."""
        hidden = {"jwt_secret", "ticket_key", "login_password", "token_claims"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}


@dataclass(frozen=True)
class Material:
    """Keys and logins loaded once in the parent: ``sign`` is None with only a public key."""

    verify: Any = field(repr=False)
    sign: Any = field(repr=False)
    ticket: bytes = field(repr=False)
    users: dict[str, str] | None = field(default=None, repr=False)


def load_material(config: TargetConfig) -> Material:
    """Load keys and the users file; ``ConfigError`` naming the option at fault."""
    users = None
    if config.users_file:
        users = {c.email: c.password for c in load_credentials(config.users_file)}
    if config.algorithm.startswith("HS"):
        # Short secrets are accepted: the target only ever serves tests and demos.
        verify = load_verifying_key(config.algorithm, secret=config.resolved_secret())
        return Material(verify, verify, config.ticket_key, users)
    if not config.jwt_public_key and not config.jwt_private_key:
        raise ConfigError(
            f"no key to validate {config.algorithm} tokens",
            fix="pass --jwt-public-key PATH (a PEM public key), or --jwt-private-key PATH to "
            "also sign the tokens /auth/login hands out",
        )
    sign = None
    if config.jwt_private_key:
        sign = load_signing_key(config.algorithm, key_file=config.jwt_private_key)
    if config.jwt_public_key:
        verify = load_verifying_key(config.algorithm, key_file=config.jwt_public_key)
    else:
        verify = sign.public_key()
    return Material(verify, sign, config.ticket_key, users)


def _ticket_key(secret: str | None) -> bytes:
    """Tickets get their own key so that a ticket can never pass as an access token."""
    if secret:
        return hmac.new(secret.encode(), b"wsload-target-ticket-v1", hashlib.sha256).digest()
    return secrets.token_bytes(32)


def _check(ok: bool, option: str, problem: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"bad value for {option}: {problem}", fix=f"{fix} ({option})")
