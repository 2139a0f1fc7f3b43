"""``wsload gate RUN_DIR``: the offline gate over a finished run folder.

So a team can change a gate and re-judge a run without loading the server again; the
verdict is the one the live gate gives on the same folder (same evaluation, same files).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsload.errors import ConfigError

EPILOG = """\
thresholds, e.g.:
  --threshold "turn:e2e p95 < 5s"  --threshold "auth.failure_rate < 1%"
  --threshold "refused.count == 0" --threshold "turn.rate >= 10/s" --threshold "goodput >= 95%"
the security defaults (probe.auth_not_enforced == 0, identity_mismatch.count == 0,
foreign_event.count == 0) are on unless --no-security-gate; the run checks
(connect.failure_rate < 100%, auth_rejected.failure_rate < 100%) always. a check that measured
nothing is "not measured": it fails the gate when you asked for it.
exit status: 0 pass, 1 a threshold failed, 2 configuration error. see docs/gate.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The offline gate's arguments (the live gate's Locust options use the same names)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("run_dir", help="a run folder, e.g. results/<run-id>")
    parser.add_argument(
        "--threshold",
        "-t",
        action="append",
        default=[],
        metavar="EXPR",
        help="a threshold, e.g. 'turn:e2e p95 < 5s' (repeatable)",
    )
    parser.add_argument(
        "--thresholds", metavar="FILE.toml", help="thresholds, goodput limits and warm-up"
    )
    parser.add_argument(
        "--warmup",
        "--gate-warmup",
        dest="warmup",
        metavar="DURATION",
        help="ignore samples within this time of the first one, e.g. 10s (default 0s)",
    )
    parser.add_argument(
        "--goodput-limit",
        action="append",
        default=[],
        metavar="NAME=DURATION",
        help="a per-turn service level for goodput, e.g. turn:gap=100ms or turn:gap=off "
        "(defaults turn:ttfe=5s, turn:e2e=60s, turn:gap=1s)",
    )
    parser.add_argument(
        "--no-security-gate",
        action="store_true",
        help="drop the default security thresholds",
    )
    parser.add_argument("--json", metavar="PATH", help="gate.json path (default RUN_DIR/gate.json)")
    parser.add_argument(
        "--junit", metavar="PATH", help="JUnit XML path (default RUN_DIR/gate-junit.xml)"
    )
    parser.add_argument(
        "--markdown", metavar="PATH", help="Markdown path (default RUN_DIR/gate.md)"
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the outputs; the exit status is the verdict."""
    from wsload.gate import build_config, gate_run_folder

    config = build_config(
        thresholds=args.threshold,
        file=args.thresholds,
        warmup=args.warmup,
        security=False if args.no_security_gate else None,
        goodput_limits=args.goodput_limit,
    )
    if not config.thresholds and not config.security:
        raise ConfigError(
            "no thresholds to gate on (and the security gate is off)",
            fix="give --threshold EXPR or --thresholds FILE.toml",
        )
    result = gate_run_folder(
        Path(args.run_dir),
        config,
        json_path=args.json,
        junit_path=args.junit,
        markdown_path=args.markdown,
    )
    return result.exit_code
