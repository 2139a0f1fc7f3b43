"""The reference target's knobs (``wsload target``), as declarations (``OptionSpec`` rows).

The target's command line is built from these rows, and ``wsload options`` lists them
beside the load options: a load run hands them to its embedded target with
``--target-args``. Unset token knobs take the profile's ``[token]`` table; only
``--jwt-secret`` has an environment variable (``JWT_SECRET_KEY``), read by the target itself.
"""

from __future__ import annotations

from typing import Any

from wsload.config.profile import ALGORITHMS
from wsload.config.spec import OptionSpec
from wsload.config.tokens import SECRET_ENV
from wsload.target.agent import HOSTILE_KINDS
from wsload.target.config import (
    AUTH_MODES,
    DEFAULT_HOST,
    DEFAULT_LOGIN_PASSWORD,
    DEFAULT_PORT,
    UPGRADE_REJECT_STATUSES,
    TargetConfig,
)

LOG_LEVELS = ("debug", "info", "warning", "error")
SERVING = "serving"
TOKENS = "tokens (unset: from the profile's [token] table)"
AUTH = "authentication behaviour"
AGENT = "agent turn"
LIMITS = "limits and liveness"
SESSION = "session lifecycle"
ISOLATION = "isolation and capacity"
FAULTS = "faults (fractions F in 0..1 drawn per turn or connection from --seed)"


def _knob(section: str, flag: str, help: str, **kw: Any) -> OptionSpec:
    kw.setdefault("env", None)
    return OptionSpec(flag, help=help, group="target", section=section, web_ui=False, **kw)


TARGET_SPECS: tuple[OptionSpec, ...] = (
    _knob(SERVING, "--host", "address to bind (%(default)s)", default=DEFAULT_HOST),
    _knob(
        SERVING,
        "--port",
        "TCP port, 0 picks a free one (%(default)s)",
        default=DEFAULT_PORT,
        type=int,
    ),
    _knob(
        SERVING,
        "--workers",
        "processes serving the one port with SO_REUSEPORT (%(default)s)",
        default=1,
        type=int,
    ),
    _knob(
        SERVING,
        "--exit-with-parent",
        "stop when the process that started the target exits (start_target sets it)",
        default=False,
        action="store_true",
    ),
    _knob(
        SERVING, "--log-level", "stderr log level (%(default)s)", default="info", choices=LOG_LEVELS
    ),
    _knob(
        SERVING,
        "--no-compression",
        "refuse permessage-deflate: answer a client's offer without the extension",
        default=False,
        action="store_true",
    ),
    _knob(SERVING, "--tls-cert", "serve wss:// with this PEM certificate (chain)", metavar="PEM"),
    _knob(SERVING, "--tls-key", "PEM key of --tls-cert (unless in that file)", metavar="PEM"),
    _knob(
        SERVING,
        "--tls-client-ca",
        "require client certificates signed by this PEM CA (mTLS; with --tls-cert)",
        metavar="PEM",
    ),
    _knob(
        TOKENS, "--profile", "protocol profile name or TOML path (%(default)s)", default="default"
    ),
    _knob(
        TOKENS,
        "--jwt-secret",
        "HS* secret; prefer the JWT_SECRET_KEY variable: command lines are visible to all",
        env=SECRET_ENV,
        secret=True,
    ),
    _knob(TOKENS, "--jwt-public-key", "RS*/ES* key that validates tokens", metavar="PEM"),
    _knob(
        TOKENS,
        "--jwt-private-key",
        "RS*/ES* key that signs the tokens /auth/login and /auth/refresh hand out",
        metavar="PEM",
    ),
    _knob(TOKENS, "--algorithm", "JWT algorithm", choices=ALGORITHMS),
    _knob(TOKENS, "--issuer", "required 'iss' claim ('' disables the check)"),
    _knob(TOKENS, "--audience", "required 'aud' claim ('' disables the check)"),
    _knob(TOKENS, "--token-type", "required 'token_type' claim of access tokens"),
    _knob(TOKENS, "--token-lifetime", "lifetime of login access tokens", type=float, metavar="S"),
    _knob(
        TOKENS,
        "--refresh-lifetime",
        "lifetime of refresh tokens (%(default)s)",
        default=TargetConfig.refresh_lifetime_s,
        type=float,
        metavar="S",
    ),
    _knob(
        TOKENS,
        "--ticket-ttl",
        "lifetime of WebSocket tickets (%(default)s)",
        default=TargetConfig.ticket_ttl_s,
        type=float,
        metavar="S",
    ),
    _knob(
        TOKENS,
        "--login-password",
        "password /auth/login accepts for any email (default %(default)s)",
        default=DEFAULT_LOGIN_PASSWORD,
    ),
    _knob(TOKENS, "--users", "email,password file: only these logins are accepted", metavar="CSV"),
    _knob(
        AUTH,
        "--auth-mode",
        "enforce checks tokens; demo acks everyone as demo-user-001; relaxed acks bad "
        "tokens as relaxed_<n>; off trusts the unverified subject (%(default)s)",
        default="enforce",
        choices=AUTH_MODES,
    ),
    _knob(
        AUTH,
        "--reject-at-upgrade",
        "reject bad tokens with this HTTP status instead of 101 + error frame + 1008",
        type=int,
        choices=UPGRADE_REJECT_STATUSES,
    ),
    _knob(AUTH, "--not-ready", "close 1011 right after accept", default=False, action="store_true"),
    _knob(AUTH, "--ack-delay", "delay before the ack frame", default=0.0, type=float, metavar="S"),
    _knob(AUTH, "--no-ack", "never send the ack frame", default=False, action="store_true"),
    _knob(
        AGENT,
        "--ttfe",
        "message to agent_started (%(default)s)",
        default=TargetConfig.ttfe_s,
        type=float,
        metavar="S",
    ),
    _knob(
        AGENT,
        "--gap",
        "between consecutive events (%(default)s)",
        default=TargetConfig.gap_s,
        type=float,
        metavar="S",
    ),
    _knob(
        AGENT,
        "--thinking-steps",
        "agent_thinking events per turn (%(default)s)",
        default=TargetConfig.thinking_steps,
        type=int,
        metavar="N",
    ),
    _knob(
        AGENT,
        "--tools",
        "tool_executing/tool_completed pairs per turn (%(default)s)",
        default=TargetConfig.tools,
        type=int,
        metavar="N",
    ),
    _knob(
        AGENT,
        "--tool-duration",
        "tool_executing to tool_completed (default: --gap)",
        type=float,
        metavar="S",
    ),
    _knob(
        AGENT,
        "--stream-tokens",
        "stream_chunk events answering each turn, one word each (%(default)s)",
        default=0,
        type=int,
        metavar="N",
    ),
    _knob(
        AGENT,
        "--token-interval",
        "between two stream_chunk events (default: --gap)",
        type=float,
        metavar="S",
    ),
    _knob(
        AGENT,
        "--jitter",
        "multiply each delay by uniform(1-F, 1+F) (%(default)s)",
        default=0.0,
        type=float,
        metavar="F",
    ),
    _knob(AGENT, "--seed", "seed of jitter and faults (per worker: seed, index)", type=int),
    _knob(
        LIMITS,
        "--max-message-bytes",
        "larger client messages are closed with 1009 (default: profile, 8192)",
        type=int,
        metavar="N",
    ),
    _knob(
        LIMITS,
        "--heartbeat",
        "send a heartbeat frame every S seconds, 0 never (%(default)s)",
        default=0.0,
        type=float,
        metavar="S",
    ),
    _knob(
        LIMITS,
        "--max-connections",
        "connections open or opening per process; past N the upgrade gets HTTP 503 "
        "(default 0: unlimited)",
        default=0,
        type=int,
        metavar="N",
    ),
    _knob(
        LIMITS,
        "--limit-close",
        "past --max-connections accept the upgrade, then close 1013 'Try again later'",
        default=False,
        action="store_true",
    ),
    _knob(
        LIMITS,
        "--connections-per-user",
        "open connections per user and process; one more gets an error frame "
        "CONNECTION_LIMIT and close 1013 before the ack (0: unlimited; default: profile, 10)",
        type=int,
        metavar="N",
    ),
    _knob(
        LIMITS,
        "--messages-per-minute",
        "client messages per connection in any 60 s; more get an error frame "
        "RATE_LIMITED and are ignored (default 0: unlimited)",
        default=0,
        type=int,
        metavar="N",
    ),
    _knob(
        SESSION,
        "--close-on-expiry",
        "close a session 1008 'Token expired' when its token's exp passes; an in-band "
        "token_refresh message moves the expiry (token_refresh is always understood)",
        default=False,
        action="store_true",
    ),
    _knob(
        ISOLATION,
        "--leak-fraction",
        "also send each agent event, with probability F, to an open connection of "
        "another user of the same process, ids unchanged (%(default)s)",
        default=0.0,
        type=float,
        metavar="F",
    ),
    _knob(
        ISOLATION,
        "--capacity",
        "concurrent turns per process the agent handles at full speed; past N every "
        "delay of every turn grows by S*(running-N)/N, S from --overload-delay (0: none)",
        default=0,
        type=int,
        metavar="N",
    ),
    _knob(
        ISOLATION,
        "--overload-delay",
        "seconds added to each delay at twice --capacity concurrent turns",
        default=0.0,
        type=float,
        metavar="S",
    ),
    _knob(
        FAULTS,
        "--drop-mid-turn",
        "abort the TCP connection (no close frame) after a non-terminal event",
        default=0.0,
        type=float,
        metavar="F",
    ),
    _knob(
        FAULTS,
        "--skip-events",
        "leave one non-terminal event out of the turn",
        default=0.0,
        type=float,
        metavar="F",
    ),
    _knob(
        FAULTS,
        "--reorder-events",
        "swap two adjacent non-terminal events of the turn",
        default=0.0,
        type=float,
        metavar="F",
    ),
    _knob(
        FAULTS,
        "--duplicate-events",
        "send one non-terminal event twice, byte-identical",
        default=0.0,
        type=float,
        metavar="F",
    ),
    _knob(
        FAULTS,
        "--duplicate-terminal",
        "send the turn's terminal event twice, byte-identical, back to back",
        default=0.0,
        type=float,
        metavar="F",
    ),
    _knob(
        FAULTS,
        "--error-events",
        "end the turn with agent_error (with error_message) instead of agent_completed",
        default=0.0,
        type=float,
        metavar="F",
    ),
    _knob(
        FAULTS,
        "--hostile",
        "also send a hostile frame after a non-terminal event: the kinds of "
        "--hostile-kinds in turn",
        default=0.0,
        type=float,
        metavar="F",
    ),
    _knob(
        FAULTS,
        "--hostile-kinds",
        "comma-separated: malformed_json (truncated JSON), binary (a non-UTF-8 binary "
        "frame), json_array (an array, not an object), unknown_type, missing_type (no type "
        "field), heartbeat_burst (1000 tiny heartbeat events) (default: all)",
        default=",".join(HOSTILE_KINDS),
        metavar="LIST",
    ),
    _knob(
        FAULTS,
        "--slow-handshake",
        "wait S seconds before answering the upgrade (101 or a rejection)",
        default=0.0,
        type=float,
        metavar="S",
    ),
    _knob(
        FAULTS,
        "--slow-handshake-fraction",
        "fraction of connections --slow-handshake applies to (%(default)s)",
        default=1.0,
        type=float,
        metavar="F",
    ),
    _knob(
        FAULTS,
        "--half-open-after",
        "S seconds after the ack the session stops answering anything (no pong, no "
        "events, no close) while TCP stays open: only a heartbeat finds out",
        default=0.0,
        type=float,
        metavar="S",
    ),
    _knob(
        FAULTS,
        "--half-open-fraction",
        "fraction of connections --half-open-after applies to (%(default)s)",
        default=1.0,
        type=float,
        metavar="F",
    ),
)
