"""``wsload target`` (and ``python -m wsload.target``): options to ``TargetConfig``, then serve.

``add_arguments`` and ``run`` are what the main ``wsload`` command line wires in; ``main``
makes the module runnable on its own. The knobs are declared in
``wsload.config.target_knobs``, which ``wsload options`` lists too. Options left unset take
their defaults from the protocol profile's ``[token]`` and ``[limits]`` tables, so the
target speaks what the tester expects. Any configuration problem ends in one message and
exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from wsload.config.profile import load_profile
from wsload.config.spec import add_argparse_arguments
from wsload.config.target_knobs import LOG_LEVELS, TARGET_SPECS
from wsload.errors import EXIT_CONFIG_ERROR, ConfigError
from wsload.target.config import TargetConfig

__all__ = ["LOG_LEVELS", "add_arguments", "build_parser", "config_from_args", "main", "run"]
EPILOG = (
    "Every fault knob is off by default. GET /stats answers the counters of the process that "
    "serves the request (with --workers N, one of them); GET /stats?all=1 sums all workers. "
    "Everything injected is counted there. See docs/target.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the target's options to ``parser`` (a subcommand parser or a standalone one)."""
    if parser.epilog is None:
        parser.epilog = EPILOG
    add_argparse_arguments(parser, TARGET_SPECS)


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
        compression=not args.no_compression,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
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
        stream_tokens=args.stream_tokens,
        token_interval_s=args.token_interval,
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
