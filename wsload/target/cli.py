"""``wsload target`` (and ``python -m wsload.target``): options to ``TargetConfig``, then serve.

``add_arguments`` and ``run`` are what the main ``wsload`` command line wires in; ``main``
makes the module runnable on its own. Options left unset take their defaults from the
protocol profile's ``[token]`` and ``[limits]`` tables, so the target speaks what the
tester expects. Any configuration problem ends in one message and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from wsload.config.profile import ALGORITHMS, load_profile
from wsload.errors import EXIT_CONFIG_ERROR, ConfigError
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
EPILOG = (
    "Every fault knob is off by default. GET /stats answers the counters of the process that "
    "serves the request (with --workers N, one of them); GET /stats?all=1 sums all workers. "
    "Everything injected is counted there. See docs/target.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the target's options to ``parser`` (a subcommand parser or a standalone one)."""
    if parser.epilog is None:
        parser.epilog = EPILOG
    serving = parser.add_argument_group("serving")
    serving.add_argument("--host", default=DEFAULT_HOST, help="address to bind (%(default)s)")
    serving.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port, 0 picks a free one (%(default)s)"
    )
    serving.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the one port with SO_REUSEPORT (%(default)s)",
    )
    serving.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started the target exits (start_target sets it)",
    )
    serving.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="stderr log level (%(default)s)"
    )

    tokens = parser.add_argument_group("tokens (unset: from the profile's [token] table)")
    tokens.add_argument(
        "--profile", default="default", help="protocol profile name or TOML path (%(default)s)"
    )
    tokens.add_argument(
        "--jwt-secret",
        help="HS* secret; prefer the JWT_SECRET_KEY variable: command lines are visible to all",
    )
    tokens.add_argument("--jwt-public-key", metavar="PEM", help="RS*/ES* key that validates tokens")
    tokens.add_argument(
        "--jwt-private-key",
        metavar="PEM",
        help="RS*/ES* key that signs the tokens /auth/login and /auth/refresh hand out",
    )
    tokens.add_argument("--algorithm", choices=ALGORITHMS, help="JWT algorithm")
    tokens.add_argument("--issuer", help="required 'iss' claim ('' disables the check)")
    tokens.add_argument("--audience", help="required 'aud' claim ('' disables the check)")
    tokens.add_argument("--token-type", help="required 'token_type' claim of access tokens")
    tokens.add_argument(
        "--token-lifetime", type=float, metavar="S", help="lifetime of login access tokens"
    )
    tokens.add_argument(
        "--refresh-lifetime",
        type=float,
        metavar="S",
        default=TargetConfig.refresh_lifetime_s,
        help="lifetime of refresh tokens (%(default)s)",
    )
    tokens.add_argument(
        "--ticket-ttl",
        type=float,
        metavar="S",
        default=TargetConfig.ticket_ttl_s,
        help="lifetime of WebSocket tickets (%(default)s)",
    )
    tokens.add_argument(
        "--login-password",
        default=DEFAULT_LOGIN_PASSWORD,
        help="password /auth/login accepts for any email (default %(default)s)",
    )
    tokens.add_argument(
        "--users", metavar="CSV", help="email,password file: only these logins are accepted"
    )

    auth = parser.add_argument_group("authentication behaviour")
    auth.add_argument(
        "--auth-mode",
        choices=AUTH_MODES,
        default="enforce",
        help="enforce checks tokens; demo acks everyone as demo-user-001; relaxed acks bad "
        "tokens as relaxed_<n>; off trusts the unverified subject (%(default)s)",
    )
    auth.add_argument(
        "--reject-at-upgrade",
        type=int,
        choices=UPGRADE_REJECT_STATUSES,
        help="reject bad tokens with this HTTP status instead of 101 + error frame + 1008",
    )
    auth.add_argument("--not-ready", action="store_true", help="close 1011 right after accept")
    auth.add_argument(
        "--ack-delay", type=float, default=0.0, metavar="S", help="delay before the ack frame"
    )
    auth.add_argument("--no-ack", action="store_true", help="never send the ack frame")

    agent = parser.add_argument_group("agent turn")
    agent.add_argument(
        "--ttfe",
        type=float,
        default=TargetConfig.ttfe_s,
        metavar="S",
        help="message to agent_started (%(default)s)",
    )
    agent.add_argument(
        "--gap",
        type=float,
        default=TargetConfig.gap_s,
        metavar="S",
        help="between consecutive events (%(default)s)",
    )
    agent.add_argument(
        "--thinking-steps",
        type=int,
        default=TargetConfig.thinking_steps,
        metavar="N",
        help="agent_thinking events per turn (%(default)s)",
    )
    agent.add_argument(
        "--tools",
        type=int,
        default=TargetConfig.tools,
        metavar="N",
        help="tool_executing/tool_completed pairs per turn (%(default)s)",
    )
    agent.add_argument(
        "--tool-duration",
        type=float,
        metavar="S",
        help="tool_executing to tool_completed (default: --gap)",
    )
    agent.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        metavar="F",
        help="multiply each delay by uniform(1-F, 1+F) (%(default)s)",
    )
    agent.add_argument(
        "--seed", type=int, help="seed of jitter and faults (per worker: seed, index)"
    )

    limits = parser.add_argument_group("limits and liveness")
    limits.add_argument(
        "--max-message-bytes",
        type=int,
        metavar="N",
        help="larger client messages are closed with 1009 (default: profile, 8192)",
    )
    limits.add_argument(
        "--heartbeat",
        type=float,
        default=0.0,
        metavar="S",
        help="send a heartbeat frame every S seconds, 0 never (%(default)s)",
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        default=0,
        metavar="N",
        help="connections open or opening per process; past N the upgrade gets HTTP 503 "
        "(default 0: unlimited)",
    )
    limits.add_argument(
        "--limit-close",
        action="store_true",
        help="past --max-connections accept the upgrade, then close 1013 'Try again later'",
    )
    limits.add_argument(
        "--connections-per-user",
        type=int,
        metavar="N",
        help="open connections per user and process; one more gets an error frame "
        "CONNECTION_LIMIT and close 1013 before the ack (0: unlimited; default: profile, 10)",
    )
    limits.add_argument(
        "--messages-per-minute",
        type=int,
        default=0,
        metavar="N",
        help="client messages per connection in any 60 s; more get an error frame "
        "RATE_LIMITED and are ignored (default 0: unlimited)",
    )

    session = parser.add_argument_group("session lifecycle")
    session.add_argument(
        "--close-on-expiry",
        action="store_true",
        help="close a session 1008 'Token expired' when its token's exp passes; an in-band "
        "token_refresh message moves the expiry (token_refresh is always understood)",
    )

    isolation = parser.add_argument_group("isolation and capacity")
    isolation.add_argument(
        "--leak-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="also send each agent event, with probability F, to an open connection of "
        "another user of the same process, ids unchanged (%(default)s)",
    )
    isolation.add_argument(
        "--capacity",
        type=int,
        default=0,
        metavar="N",
        help="concurrent turns per process the agent handles at full speed; past N every "
        "delay of every turn grows by S*(running-N)/N, S from --overload-delay (0: none)",
    )
    isolation.add_argument(
        "--overload-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds added to each delay at twice --capacity concurrent turns",
    )

    faults = parser.add_argument_group(
        "faults (fractions F in 0..1 drawn per turn or connection from --seed)"
    )
    faults.add_argument(
        "--drop-mid-turn",
        type=float,
        default=0.0,
        metavar="F",
        help="abort the TCP connection (no close frame) after a non-terminal event",
    )
    faults.add_argument(
        "--skip-events",
        type=float,
        default=0.0,
        metavar="F",
        help="leave one non-terminal event out of the turn",
    )
    faults.add_argument(
        "--reorder-events",
        type=float,
        default=0.0,
        metavar="F",
        help="swap two adjacent non-terminal events of the turn",
    )
    faults.add_argument(
        "--duplicate-events",
        type=float,
        default=0.0,
        metavar="F",
        help="send one non-terminal event twice, byte-identical",
    )
    faults.add_argument(
        "--duplicate-terminal",
        type=float,
        default=0.0,
        metavar="F",
        help="send the turn's terminal event twice, byte-identical, back to back",
    )
    faults.add_argument(
        "--error-events",
        type=float,
        default=0.0,
        metavar="F",
        help="end the turn with agent_error (with error_message) instead of agent_completed",
    )
    faults.add_argument(
        "--hostile",
        type=float,
        default=0.0,
        metavar="F",
        help="also send a hostile frame after a non-terminal event: the kinds of "
        "--hostile-kinds in turn",
    )
    faults.add_argument(
        "--hostile-kinds",
        default=",".join(HOSTILE_KINDS),
        metavar="LIST",
        help="comma-separated: malformed_json (truncated JSON), binary (a non-UTF-8 binary "
        "frame), json_array (an array, not an object), unknown_type, missing_type (no type "
        "field), heartbeat_burst (1000 tiny heartbeat events) (default: all)",
    )
    faults.add_argument(
        "--slow-handshake",
        type=float,
        default=0.0,
        metavar="S",
        help="wait S seconds before answering the upgrade (101 or a rejection)",
    )
    faults.add_argument(
        "--slow-handshake-fraction",
        type=float,
        default=1.0,
        metavar="F",
        help="fraction of connections --slow-handshake applies to (%(default)s)",
    )
    faults.add_argument(
        "--half-open-after",
        type=float,
        default=0.0,
        metavar="S",
        help="S seconds after the ack the session stops answering anything (no pong, no "
        "events, no close) while TCP stays open: only a heartbeat finds out",
    )
    faults.add_argument(
        "--half-open-fraction",
        type=float,
        default=1.0,
        metavar="F",
        help="fraction of connections --half-open-after applies to (%(default)s)",
    )


def config_from_args(args: argparse.Namespace) -> TargetConfig:
    """The config the options describe (not yet validated)."""
    profile = load_profile(args.profile)
    config = TargetConfig.from_token_spec(profile.token)
    overrides = {
        "algorithm": args.algorithm,
        "issuer": args.issuer,
        "audience": args.audience,
        "token_type": args.token_type,
        "access_lifetime_s": args.token_lifetime,
    }
    return dataclasses.replace(
        config,
        **{name: value for name, value in overrides.items() if value is not None},
        host=args.host,
        port=args.port,
        workers=args.workers,
        jwt_secret=args.jwt_secret,
        jwt_public_key=args.jwt_public_key,
        jwt_private_key=args.jwt_private_key,
        refresh_lifetime_s=args.refresh_lifetime,
        ticket_ttl_s=args.ticket_ttl,
        login_password=args.login_password,
        users_file=args.users,
        auth_mode=args.auth_mode,
        reject_at_upgrade=args.reject_at_upgrade,
        not_ready=args.not_ready,
        ack_delay_s=args.ack_delay,
        no_ack=args.no_ack,
        ttfe_s=args.ttfe,
        gap_s=args.gap,
        thinking_steps=args.thinking_steps,
        tools=args.tools,
        tool_duration_s=args.tool_duration,
        jitter=args.jitter,
        seed=args.seed,
        max_message_bytes=args.max_message_bytes or profile.limits.max_message_bytes,
        heartbeat_s=args.heartbeat,
        max_connections=args.max_connections,
        limit_close=args.limit_close,
        connections_per_user=(
            profile.limits.connections_per_user
            if args.connections_per_user is None
            else args.connections_per_user
        ),
        messages_per_minute=args.messages_per_minute,
        close_on_expiry=args.close_on_expiry,
        leak_fraction=args.leak_fraction,
        capacity=args.capacity,
        overload_delay_s=args.overload_delay,
        drop_mid_turn=args.drop_mid_turn,
        skip_events=args.skip_events,
        reorder_events=args.reorder_events,
        duplicate_events=args.duplicate_events,
        duplicate_terminal=args.duplicate_terminal,
        error_events=args.error_events,
        hostile=args.hostile,
        hostile_kinds=tuple(k.strip() for k in args.hostile_kinds.split(",") if k.strip()),
        slow_handshake_s=args.slow_handshake,
        slow_handshake_fraction=args.slow_handshake_fraction,
        half_open_after_s=args.half_open_after,
        half_open_fraction=args.half_open_fraction,
    )


def run(args: argparse.Namespace) -> int:
    """Serve with parsed options; 0 after a clean stop, 2 on a configuration error."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, args.log_level.upper()),
            format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
            stream=sys.stderr,
        )
    from wsload.target.config import load_material
    from wsload.target.process import serve

    try:
        config = config_from_args(args).validate()
        material = load_material(config)
        return serve(config, material, exit_with_parent=args.exit_with_parent)
    except ConfigError as exc:
        print(f"wsload target: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except RuntimeError as exc:  # a worker that failed to start for another reason
        print(f"wsload target: error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsload target",
        description="Reference agent-chat WebSocket server speaking the default protocol profile.",
    )
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m wsload.target [options]``."""
    return run(build_parser().parse_args(argv))
