"""wsload's run configuration: parsed once per process from the one declaration table.

The declarations (``OPTION_SPECS``: run, gate, capacity and SLO groups) are plain data that
the Locust glue registers; ``run_config`` turns a parsed namespace into an immutable, checked
``RunOptions``, cached by the option values, so every component of a process shares one
configuration and every file it names (profile, corpus, credentials, thresholds) is read
once. Nothing here imports Locust.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from wsload.capacity.options import CAPACITY_SPECS, ZERO_OK, slo, step_settings
from wsload.capacity.slo import SLO
from wsload.capacity.step_plan import StepSettings
from wsload.config.connection_specs import CONNECTION_SPECS
from wsload.config.corpus import Corpus, load_corpus
from wsload.config.idp_specs import IDP_SPECS
from wsload.config.idp_tokens import build_oauth2_client, load_file_tokens
from wsload.config.metrics_specs import METRICS_SPECS
from wsload.config.pacing import Backoff, ThinkTime, parse_think_time
from wsload.config.profile import Profile, load_profile
from wsload.config.run_specs import CLIENT_MODES, GATE_SPECS, RUN_SPECS, TOKEN_SOURCES
from wsload.config.spec import OptionSpec
from wsload.config.stream import token_counter
from wsload.config.token_file import FileToken
from wsload.config.tokens import Credential, load_credentials
from wsload.config.transport_specs import TRANSPORT_SPECS, transport_settings
from wsload.errors import ConfigError
from wsload.gate import GateConfig, build_config
from wsload.net.oauth2 import OAuth2Client
from wsload.net.source_ips import parse_source_ips
from wsload.net.tls import DEFAULT_TLS, TlsSettings

__all__ = [
    "CLIENT_MODES",
    "OPTION_SPECS",
    "TOKEN_SOURCES",
    "OptionSpec",
    "RunOptions",
    "forget_run_configs",
    "from_namespace",
    "http_base",
    "refresh_margin",
    "run_config",
    "websocket_url",
]

#: every option a locustfile registers on Locust's parser, in ``--help`` order
OPTION_SPECS: tuple[OptionSpec, ...] = (
    RUN_SPECS
    + IDP_SPECS
    + TRANSPORT_SPECS
    + GATE_SPECS
    + CAPACITY_SPECS
    + METRICS_SPECS
    + CONNECTION_SPECS
)
OPTION_DESTS = tuple(spec.dest for spec in OPTION_SPECS)
_ZERO_OK = {
    "send_interval",
    "messages_per_session",
    "probe_users",
    "refresh_margin",
    "heartbeat_interval",
    "storm",
    "trickle_interval",
    "max_handshakes",
    "io_batch",
    *ZERO_OK,
}
_CACHED_CONFIGS = 16  # option sets kept (the web UI may go back and forth)


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
    steps: StepSettings  # capacity runs: the step plan's settings
    slo: SLO  # capacity runs: the service levels a step must keep
    token_file: tuple[FileToken, ...] = ()  # --token-source file: one user per line
    oauth2: OAuth2Client | None = None  # the token endpoint (oauth2; file tokens' refresh)
    compression: str = "browser"  # permessage-deflate offered (browser) or not (off)
    tls: TlsSettings = DEFAULT_TLS  # wss://: CA, --tls-insecure, client certificate
    source_ips: tuple[str, ...] = ()  # local addresses to connect from (all processes')
    budget_check: bool = True  # local ports and open files checked before the ramp
    trickle_interval_s: float = 0.0  # connections.py: a chat message per session every S s
    sessions_per_user: int = 1  # connections.py: sessions one user holds
    max_handshakes: int = 0  # connections.py: attempts in flight per process (0: unbounded)
    io_batch_ms: float = 0.0  # connections.py: network events gather this long per wake


def _check_number(name: str, value: float | None, *, allow_zero: bool) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ConfigError(f"--{name} must be {bound}, got {value}", fix=f"pass --{name} 1")


_configs: dict[tuple[Any, ...], RunOptions] = {}


def run_config(ns: Any) -> RunOptions:
    """The run's checked configuration from a parsed namespace, built once per option values.

    A second call with the same values returns the same object without reading any file;
    a bad value raises ``ConfigError`` naming the option (and is not remembered).
    """
    key = tuple(spec.coerce(getattr(ns, spec.dest, None)) for spec in OPTION_SPECS)
    config = _configs.get(key)
    if config is None:
        values = dict(zip(OPTION_DESTS, key, strict=True))
        config = _build(lambda dest, default=None: _or(values[dest], default))
        if len(_configs) >= _CACHED_CONFIGS:
            del _configs[next(iter(_configs))]
        _configs[key] = config
    return config


#: the name the Locust glue has always called
from_namespace = run_config


def forget_run_configs() -> None:
    """Drop remembered configurations and files: the next call reads everything again."""
    _configs.clear()
    for loader in (_profile, _corpus, _credentials, _gate):
        loader.cache_clear()


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


@lru_cache(maxsize=8)
def _profile(name: str) -> Profile:
    profile = load_profile(name)
    if profile.stream.events:  # a tokenizer that cannot load stops the run before load
        token_counter(profile.stream.tokenizer)
    return profile


@lru_cache(maxsize=8)
def _corpus(path: str | None) -> Corpus:
    return load_corpus(path)


@lru_cache(maxsize=8)
def _credentials(path: str) -> tuple[Credential, ...]:
    return tuple(load_credentials(path))


@lru_cache(maxsize=8)
def _gate(
    thresholds: tuple[str, ...],
    file: str | None,
    warmup: str | None,
    security: bool | None,
    goodput_limits: tuple[str, ...],
) -> GateConfig:
    return build_config(
        thresholds=thresholds,
        file=file,
        warmup=warmup,
        security=security,
        goodput_limits=goodput_limits,
    )


def _build(get: Callable[..., Any]) -> RunOptions:
    """Check the values and read the files they name."""
    profile = _profile(get("ws_profile", "default"))
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
    if carrier == "connect" and profile.transport.framing != "socketio":
        raise ConfigError(
            f"--ws-carrier connect puts the token in a Socket.IO CONNECT packet, but the "
            f"profile {profile.name!r} speaks plain JSON frames",
            fix='use a Socket.IO profile (transport.framing = "socketio") or another carrier',
        )
    token_source = get("token_source", "mint")
    credentials: tuple[Credential, ...] = ()
    oauth2 = build_oauth2_client(profile, token_source, get)
    needs_logins = token_source == "login" or (
        token_source == "oauth2" and profile.oauth2.grant == "password"
    )
    if needs_logins:
        if not get("credentials"):
            raise ConfigError(
                f"--token-source {token_source} needs --credentials"
                + (" (the oauth2 password grant logs every user in)" if oauth2 else ""),
                fix="pass --credentials users.csv (header line email,password; one user per line)",
            )
        credentials = _credentials(get("credentials"))
    heartbeat = get("heartbeat_interval", profile.heartbeat.interval_s)
    backoff = Backoff(get("reconnect_base", 0.5), get("reconnect_max", 10.0))
    if backoff.base_s > backoff.max_s:
        raise ConfigError(
            "--reconnect-base is above --reconnect-max", fix="make the base the smaller one"
        )
    compression, tls = transport_settings(get, profile)
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
        corpus=_corpus(get("corpus")),
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
        gate=_gate(
            get("threshold", ()),
            get("thresholds"),
            get("gate_warmup"),
            False if get("no_security_gate") else None,
            get("goodput_limit", ()),
        ),
        user_thresholds=bool(get("threshold") or get("thresholds")),
        steps=step_settings(get),
        slo=slo(get),
        token_file=load_file_tokens(profile, token_source, get),
        oauth2=oauth2,
        compression=compression,
        tls=tls,
        source_ips=parse_source_ips(get("source_ips")),
        budget_check=not get("no_budget_check", False),
        trickle_interval_s=get("trickle_interval", 0.0),
        sessions_per_user=get("sessions_per_user", 1),
        max_handshakes=get("max_handshakes", 0),
        io_batch_ms=get("io_batch", 0.0),
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
