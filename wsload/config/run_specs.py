"""The options of a load run and of its live gate, as declarations (``OptionSpec`` rows).

Every locustfile registers these (``wsload.config.options.OPTION_SPECS``); values come from
the command line, the environment variable named, ``locust.conf`` or the web UI form.
"""

from __future__ import annotations

from typing import Any

from wsload.config.profile import CARRIERS
from wsload.config.spec import OptionSpec

TOKEN_SOURCES = ("mint", "login", "file", "oauth2")
CLIENT_MODES = ("browser", "native")


def _spec(
    flag: str, env: str, help: str, default: Any = None, type: type = str, **kw: Any
) -> OptionSpec:
    """A row; secrets and repeatable options stay out of the web UI form."""
    kw.setdefault("web_ui", not kw.get("secret") and kw.get("action") != "append")
    return OptionSpec(flag, env, help, default, type, **kw)


def _gate(*args: Any, **kw: Any) -> OptionSpec:
    return _spec(*args, group="gate", **kw)


RUN_SPECS: tuple[OptionSpec, ...] = (
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
        "mint tokens locally, log in over HTTP with --credentials, read pre-issued ones "
        "from --token-file, or get them from the profile's OAuth2 token endpoint",
        "mint",
        choices=TOKEN_SOURCES,
    ),
    _spec(
        "--credentials",
        "WSLOAD_CREDENTIALS",
        "CSV file with an email,password header: one login per user (token source login, "
        "and oauth2 with the password grant)",
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
        "--results",
        "WSLOAD_RESULTS",
        "folder for this run's results tables and run.json (default: results/<run-id>/)",
        "",
    ),
    _spec(
        "--target-args",
        "WSLOAD_TARGET_ARGS",
        "arguments for the reference target started when no --host is given, "
        "e.g. '--ttfe 0.08 --gap 0.025' (start-up only: not in the web UI)",
        "",
        web_ui=False,
    ),
    _spec(
        "--request-events",
        "WSLOAD_REQUEST_EVENTS",
        "fire a Locust request event for each of wsload's samples, for plugins and --otel "
        "that listen to them (slower; by default wsload logs its samples into Locust's "
        "stats directly)",
        False,
        bool,
        action="store_true",
        web_ui=False,
    ),
)

GATE_SPECS: tuple[OptionSpec, ...] = (
    _gate(
        "--threshold",
        "WSLOAD_THRESHOLD",
        "a gate threshold, repeatable, e.g. 'turn:e2e p95 < 5s' or 'auth.failure_rate < 1%%' "
        "(add 'abort' to stop the run as soon as it cannot be met)",
        action="append",
    ),
    _gate("--thresholds", "WSLOAD_THRESHOLDS", "TOML file of gate thresholds", ""),
    _gate(
        "--gate-warmup",
        "WSLOAD_GATE_WARMUP",
        "ignore samples this long after the first (e.g. 10s)",
        "",
    ),
    _gate(
        "--goodput-limit",
        "WSLOAD_GOODPUT_LIMIT",
        "per-stage limit a good turn must meet, repeatable, e.g. 'turn:ttfe=2s'",
        action="append",
    ),
    _gate(
        "--no-security-gate",
        "WSLOAD_NO_SECURITY_GATE",
        "do not fail the run on accepted auth probes or identity mismatches",
        False,
        bool,
        action="store_true",
    ),
)
