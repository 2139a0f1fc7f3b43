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

from wsload.config.corpus import Corpus, load_corpus
from wsload.config.pacing import Backoff, ThinkTime, parse_think_time
from wsload.config.profile import CARRIERS, Profile, load_profile
from wsload.config.tokens import Credential, load_credentials
from wsload.errors import ConfigError
from wsload.gate import GateConfig, build_config

TOKEN_SOURCES = ("mint", "login")
CLIENT_MODES = ("browser", "native")


@dataclass(frozen=True)
class OptionSpec:
    flag: str
    env: str
    help: str
    default: Any = None
    type: type = str
    secret: bool = False
    choices: tuple[str, ...] | None = None
    action: str | None = None  # "append" (repeatable) or "store_true" (a switch)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _spec(flag: str, env: str, help: str, default: Any = None, type: type = str, **kw: Any):
    return OptionSpec(flag, env, help, default, type, **kw)


OPTION_SPECS: tuple[OptionSpec, ...] = (
    _spec(
        "--ws-profile",
        "WSLOAD_PROFILE",
        "protocol profile: a name in profiles/ or a TOML path",
        "default",
    ),
    _spec(
        "--jwt-secret",
        "JWT_SECRET_KEY",
        "HS256 secret tokens are signed with (default: generated for the embedded target)",
        secret=True,
    ),
    _spec(
        "--jwt-private-key", "WSLOAD_JWT_PRIVATE_KEY", "PEM private key file for RS256/ES256 tokens"
    ),
    _spec(
        "--token-lifetime",
        "WSLOAD_TOKEN_LIFETIME",
        "lifetime of minted tokens in seconds (default: the profile's)",
        type=float,
    ),
    _spec(
        "--token-source",
        "WSLOAD_TOKEN_SOURCE",
        "mint tokens locally, or log in over HTTP with --credentials",
        "mint",
        choices=TOKEN_SOURCES,
    ),
    _spec(
        "--credentials",
        "WSLOAD_CREDENTIALS",
        "CSV file with an email,password header: one login per user (token source login)",
        "",
    ),
    _spec(
        "--refresh-margin",
        "WSLOAD_REFRESH_MARGIN",
        "refresh a token this many seconds before it expires "
        "(0: a quarter of its lifetime, at most 60 s)",
        0.0,
        float,
    ),
    _spec(
        "--ws-carrier",
        "WSLOAD_CARRIER",
        "where the token travels (default: the profile's)",
        choices=CARRIERS,
    ),
    _spec(
        "--client-mode",
        "WSLOAD_CLIENT_MODE",
        "browser (Origin, browser User-Agent, no Authorization header) or native",
        "browser",
        choices=CLIENT_MODES,
    ),
    _spec(
        "--think-time",
        "WSLOAD_THINK_TIME",
        "pause between a user's messages: seconds, constant:S, uniform:MIN:MAX or exp:MEAN",
        "1.0",
    ),
    _spec(
        "--send-interval",
        "WSLOAD_SEND_INTERVAL",
        "open model: each user sends a message every S seconds on a fixed schedule, whatever "
        "the answers take, and latency is also recorded from the intended send time "
        "(turn:e2e_intended); 0: closed model with --think-time",
        0.0,
        float,
    ),
    _spec(
        "--corpus",
        "WSLOAD_CORPUS",
        "chat messages: a text file (one per line) or JSONL "
        "({content} or {messages: [...]}); default built in",
        "",
    ),
    _spec(
        "--turns-per-conversation",
        "WSLOAD_TURNS_PER_CONVERSATION",
        "messages on one thread before the user starts a new conversation",
        5,
        int,
    ),
    _spec(
        "--messages-per-session",
        "WSLOAD_MESSAGES_PER_SESSION",
        "chat messages before the user closes and opens a new session (0: never)",
        0,
        int,
    ),
    _spec(
        "--heartbeat-interval",
        "WSLOAD_HEARTBEAT_INTERVAL",
        "seconds between pings (default: the profile's; 0: no heartbeat)",
        type=float,
    ),
    _spec(
        "--pong-timeout",
        "WSLOAD_PONG_TIMEOUT",
        "seconds to wait for a pong before the session counts as dead",
        10.0,
        float,
    ),
    _spec(
        "--reconnect-base",
        "WSLOAD_RECONNECT_BASE",
        "first reconnect backoff ceiling in seconds (doubles per attempt, full jitter)",
        0.5,
        float,
    ),
    _spec(
        "--reconnect-max",
        "WSLOAD_RECONNECT_MAX",
        "largest reconnect backoff in seconds",
        10.0,
        float,
    ),
    _spec(
        "--connect-timeout",
        "WSLOAD_CONNECT_TIMEOUT",
        "seconds for TCP connect and for the upgrade answer",
        10.0,
        float,
    ),
    _spec(
        "--ack-timeout",
        "WSLOAD_ACK_TIMEOUT",
        "seconds from HTTP 101 to the ack (default: the profile's)",
        type=float,
    ),
    _spec(
        "--turn-timeout",
        "WSLOAD_TURN_TIMEOUT",
        "seconds a whole agent turn may take (default: the profile's)",
        type=float,
    ),
    _spec(
        "--event-timeout",
        "WSLOAD_EVENT_TIMEOUT",
        "longest silence between two events of a turn (default: the profile's)",
        type=float,
    ),
    _spec(
        "--probe-users",
        "WSLOAD_PROBE_USERS",
        "users (out of --users) that run negative auth probes; 0 turns the probes off",
        1,
        int,
    ),
    _spec(
        "--probe-interval",
        "WSLOAD_PROBE_INTERVAL",
        "seconds between two probes of one probe user",
        1.0,
        float,
    ),
    _spec(
        "--storm",
        "WSLOAD_STORM",
        "HandshakeUser: every user connects at the same moment, once per this many "
        "seconds (0: back to back)",
        0.0,
        float,
    ),
    _spec(
        "--threshold",
        "WSLOAD_THRESHOLD",
        "a gate threshold, repeatable, e.g. 'turn:e2e p95 < 5s' or 'auth.failure_rate < 1%%' "
        "(add 'abort' to stop the run as soon as it cannot be met)",
        action="append",
    ),
    _spec("--thresholds", "WSLOAD_THRESHOLDS", "TOML file of gate thresholds", ""),
    _spec(
        "--gate-warmup",
        "WSLOAD_GATE_WARMUP",
        "ignore samples this long after the first (e.g. 10s)",
        "",
    ),
    _spec(
        "--goodput-limit",
        "WSLOAD_GOODPUT_LIMIT",
        "per-stage limit a good turn must meet, repeatable, e.g. 'turn:ttfe=2s'",
        action="append",
    ),
    _spec(
        "--no-security-gate",
        "WSLOAD_NO_SECURITY_GATE",
        "do not fail the run on accepted auth probes or identity mismatches",
        False,
        bool,
        action="store_true",
    ),
    _spec(
        "--results",
        "WSLOAD_RESULTS",
        "folder for this run's raw samples and run.json (default: results/<run-id>/)",
        "",
    ),
    _spec(
        "--target-args",
        "WSLOAD_TARGET_ARGS",
        "arguments for the reference target started when no --host is given, "
        "e.g. '--ttfe 0.08 --gap 0.025'",
        "",
    ),
)
_ZERO_OK = {
    "send_interval",
    "messages_per_session",
    "probe_users",
    "refresh_margin",
    "heartbeat_interval",
    "storm",
}


@dataclass(frozen=True)
class RunOptions:
    """Validated options of one run."""

    profile: Profile
    jwt_secret: str | None
    jwt_private_key: str | None
    token_lifetime_s: float
    token_source: str
    credentials: tuple[Credential, ...]
    refresh_margin_s: float
    carrier: str
    client_mode: str
    think_time: ThinkTime
    send_interval_s: float
    corpus: Corpus
    turns_per_conversation: int
    messages_per_session: int
    heartbeat_interval_s: float
    pong_timeout_s: float
    backoff: Backoff
    connect_timeout_s: float
    ack_timeout_s: float
    turn_timeout_s: float
    event_timeout_s: float
    probe_users: int
    probe_interval_s: float
    storm_interval_s: float
    results: str
    target_args: tuple[str, ...]
    gate: GateConfig
    user_thresholds: bool  # the user gave thresholds: the gate decides the exit code


def _check_number(name: str, value: float | None, *, allow_zero: bool) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ConfigError(f"--{name} must be {bound}, got {value}", fix=f"pass --{name} 1")


def from_namespace(ns: Any) -> RunOptions:
    """Build and check ``RunOptions`` from a parsed argument namespace."""

    def get(dest: str, default: Any = None) -> Any:
        value = getattr(ns, dest, None)
        return default if value is None or value == "" else value

    profile = load_profile(get("ws_profile", "default"))
    for spec in OPTION_SPECS:
        if spec.type in (float, int) and spec.action is None:
            _check_number(spec.flag[2:], get(spec.dest), allow_zero=spec.dest in _ZERO_OK)
    try:
        target_args = tuple(shlex.split(get("target_args", "")))
    except ValueError as exc:
        raise ConfigError(
            f"--target-args cannot be split: {exc}", fix="quote it like a shell command line"
        ) from None
    carrier = get("ws_carrier", profile.auth.carrier)
    client_mode = get("client_mode", "browser")
    if carrier == "header" and client_mode == "browser":
        raise ConfigError(
            "the header carrier puts the token in Authorization, which browsers cannot set on a "
            "WebSocket",
            fix="pass --client-mode native to load as a non-browser client, or choose another "
            "--ws-carrier (subprotocol, query, cookie, ticket)",
        )
    token_source = get("token_source", "mint")
    credentials: tuple[Credential, ...] = ()
    if token_source == "login":
        if not get("credentials"):
            raise ConfigError(
                "--token-source login needs --credentials",
                fix="pass --credentials users.csv (header line email,password; one user per line)",
            )
        credentials = tuple(load_credentials(get("credentials")))
    heartbeat = get("heartbeat_interval", profile.heartbeat.interval_s)
    backoff = Backoff(get("reconnect_base", 0.5), get("reconnect_max", 10.0))
    if backoff.base_s > backoff.max_s:
        raise ConfigError(
            "--reconnect-base is above --reconnect-max", fix="make the base the smaller one"
        )
    return RunOptions(
        profile=profile,
        jwt_secret=get("jwt_secret"),
        jwt_private_key=get("jwt_private_key"),
        token_lifetime_s=get("token_lifetime", profile.token.lifetime_s),
        token_source=token_source,
        credentials=credentials,
        refresh_margin_s=get("refresh_margin", 0.0),
        carrier=carrier,
        client_mode=client_mode,
        think_time=parse_think_time(get("think_time", "1.0")),
        send_interval_s=get("send_interval", 0.0),
        corpus=load_corpus(get("corpus")),
        turns_per_conversation=get("turns_per_conversation", 5),
        messages_per_session=get("messages_per_session", 0),
        heartbeat_interval_s=heartbeat,
        pong_timeout_s=get("pong_timeout", 10.0),
        backoff=backoff,
        connect_timeout_s=get("connect_timeout", 10.0),
        ack_timeout_s=get("ack_timeout", profile.ack.timeout_s),
        turn_timeout_s=get("turn_timeout", profile.chat.timeout_s),
        event_timeout_s=get("event_timeout", profile.chat.event_timeout_s),
        probe_users=get("probe_users", 1),
        probe_interval_s=get("probe_interval", 1.0),
        storm_interval_s=get("storm", 0.0),
        results=get("results", ""),
        target_args=target_args,
        gate=build_config(
            thresholds=tuple(get("threshold", ())),
            file=get("thresholds"),
            warmup=get("gate_warmup"),
            security=False if get("no_security_gate") else None,
            goodput_limits=tuple(get("goodput_limit", ())),
        ),
        user_thresholds=bool(get("threshold") or get("thresholds")),
    )


def refresh_margin(options: RunOptions, lifetime_s: float) -> float:
    """Seconds before expiry to refresh: the option, else a quarter of the life (<= 60 s)."""
    if options.refresh_margin_s > 0:
        return min(options.refresh_margin_s, lifetime_s * 0.9)
    return min(60.0, lifetime_s / 4)


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
