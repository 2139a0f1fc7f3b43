"""wsload's run options: declared once, registered on Locust's parser, validated up front.

The declarations are plain data so the one Locust glue module can register them (with
their environment variables, and masked in the web UI when secret), while everything else
reads a validated ``RunOptions`` without importing Locust.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from wsload.errors import ConfigError
from wsload.profile import CARRIERS, Profile, load_profile


@dataclass(frozen=True)
class OptionSpec:
    flag: str
    env: str
    help: str
    default: Any = None
    type: type = str
    secret: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTION_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "--ws-profile",
        "WSLOAD_PROFILE",
        "protocol profile: a name in profiles/ or a TOML path",
        "default",
    ),
    OptionSpec(
        "--jwt-secret",
        "JWT_SECRET_KEY",
        "HS256 secret tokens are signed with (default: generated for the embedded target)",
        secret=True,
    ),
    OptionSpec(
        "--jwt-private-key", "WSLOAD_JWT_PRIVATE_KEY", "PEM private key file for RS256/ES256 tokens"
    ),
    OptionSpec(
        "--token-lifetime",
        "WSLOAD_TOKEN_LIFETIME",
        "lifetime of minted tokens in seconds (default: the profile's)",
        type=float,
    ),
    OptionSpec(
        "--ws-carrier",
        "WSLOAD_CARRIER",
        "where the token travels (default: the profile's)",
        choices=CARRIERS,
    ),
    OptionSpec(
        "--think-time",
        "WSLOAD_THINK_TIME",
        "seconds a user waits between chat messages",
        1.0,
        float,
    ),
    OptionSpec(
        "--messages-per-session",
        "WSLOAD_MESSAGES_PER_SESSION",
        "chat messages before the user closes and opens a new session (0: never)",
        0,
        int,
    ),
    OptionSpec(
        "--chat-message",
        "WSLOAD_CHAT_MESSAGE",
        "text of each chat message",
        "Summarise my open tickets, please.",
    ),
    OptionSpec(
        "--connect-timeout",
        "WSLOAD_CONNECT_TIMEOUT",
        "seconds for TCP connect and for the upgrade answer",
        10.0,
        float,
    ),
    OptionSpec(
        "--ack-timeout",
        "WSLOAD_ACK_TIMEOUT",
        "seconds from HTTP 101 to the ack (default: the profile's)",
        type=float,
    ),
    OptionSpec(
        "--turn-timeout",
        "WSLOAD_TURN_TIMEOUT",
        "seconds a whole agent turn may take (default: the profile's)",
        type=float,
    ),
    OptionSpec(
        "--event-timeout",
        "WSLOAD_EVENT_TIMEOUT",
        "longest silence between two events of a turn (default: the profile's)",
        type=float,
    ),
    OptionSpec(
        "--probe-users",
        "WSLOAD_PROBE_USERS",
        "users (out of --users) that run negative auth probes; 0 turns the probes off",
        1,
        int,
    ),
    OptionSpec(
        "--probe-interval",
        "WSLOAD_PROBE_INTERVAL",
        "seconds between two probes of one probe user",
        1.0,
        float,
    ),
    OptionSpec(
        "--results",
        "WSLOAD_RESULTS",
        "folder for this run's raw samples and run.json (default: results/<run-id>/)",
        "",
    ),
    OptionSpec(
        "--target-args",
        "WSLOAD_TARGET_ARGS",
        "arguments for the reference target started when no --host is given, "
        "e.g. '--ttfe 0.08 --gap 0.025'",
        "",
    ),
)


@dataclass(frozen=True)
class RunOptions:
    """Validated options of one run."""

    profile: Profile
    jwt_secret: str | None
    jwt_private_key: str | None
    token_lifetime_s: float
    carrier: str
    think_time_s: float
    messages_per_session: int
    chat_message: str
    connect_timeout_s: float
    ack_timeout_s: float
    turn_timeout_s: float
    event_timeout_s: float
    target_args: tuple[str, ...]
    results: str
    probe_users: int
    probe_interval_s: float


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ConfigError(
            f"--{name} must be {bound}, got {value}",
            fix=f"pass --{name} {1 if not allow_zero else 0}",
        )


def from_namespace(ns: Any) -> RunOptions:
    """Build and check ``RunOptions`` from a parsed argument namespace."""
    get = lambda dest: getattr(ns, dest, None)  # noqa: E731
    profile = load_profile(get("ws_profile") or "default")
    for spec in OPTION_SPECS:
        if spec.type is float or spec.type is int:
            _positive(
                spec.flag[2:],
                get(spec.dest),
                allow_zero=spec.dest in ("think_time", "messages_per_session", "probe_users"),
            )
    try:
        target_args = tuple(shlex.split(get("target_args") or ""))
    except ValueError as exc:
        raise ConfigError(
            f"--target-args cannot be split: {exc}", fix="quote it like a shell command line"
        ) from None
    return RunOptions(
        profile=profile,
        jwt_secret=get("jwt_secret") or None,
        jwt_private_key=get("jwt_private_key") or None,
        token_lifetime_s=get("token_lifetime") or profile.token.lifetime_s,
        carrier=get("ws_carrier") or profile.auth.carrier,
        think_time_s=get("think_time") if get("think_time") is not None else 1.0,
        messages_per_session=get("messages_per_session") or 0,
        chat_message=get("chat_message") or "Hello",
        connect_timeout_s=get("connect_timeout") or 10.0,
        ack_timeout_s=get("ack_timeout") or profile.ack.timeout_s,
        turn_timeout_s=get("turn_timeout") or profile.chat.timeout_s,
        event_timeout_s=get("event_timeout") or profile.chat.event_timeout_s,
        target_args=target_args,
        results=get("results") or "",
        probe_users=1 if get("probe_users") is None else get("probe_users"),
        probe_interval_s=get("probe_interval") or 1.0,
    )


def websocket_url(host: str, profile: Profile) -> str:
    """The chat endpoint URL for a ``--host``: http(s) becomes ws(s), a bare host gets the path."""
    if "://" not in host:
        raise ConfigError(
            f"--host {host!r} has no scheme",
            fix="give it as ws://HOST:PORT (or wss://, http://, https://)",
        )
    parts = urlsplit(host)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(
            f"--host {host!r} is not a WebSocket or HTTP URL",
            fix="give it as ws://HOST:PORT (or wss://, http://, https://)",
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(
            f"--host {host!r} has an invalid port", fix="use a port from 1 to 65535"
        ) from None
    path = parts.path if parts.path not in ("", "/") else profile.endpoint.path
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def http_base(ws_url: str) -> str:
    """The HTTP origin of a WebSocket URL, for login, refresh and ticket requests."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "", "", ""))
