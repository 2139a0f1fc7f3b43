"""``wsload report RUN_DIR``: an HTML page and a Markdown file with PNG figures for a run.

    wsload report results/<run-id>                              # into results/<run-id>/report/
    wsload report results/new --baseline results/old --target-users 5000 --output /tmp/r

The builder lives in ``builder`` (``build_report``), the figures in ``figures``; this module
is only the command-line glue that ``wsload.cli`` registers.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Any

from wsload.analysis.slo import SLO, SLO_OPTIONS
from wsload.errors import EXIT_CONFIG_ERROR, ConfigError

if TYPE_CHECKING:
    from .builder import ReportFiles

__all__ = ["MEMORY_LIMIT", "add_arguments", "build_report", "run"]

MEMORY_LIMIT = "3GB"  # DuckDB's for the report's queries: the report's memory, whatever the run


def build_report(run_dir: Any, **kwargs: Any) -> ReportFiles:
    """See ``wsload.reports.builder.build_report`` (imported on use: pandas, matplotlib)."""
    from .builder import build_report as build

    return build(run_dir, **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder, e.g. results/<run-id>")
    parser.add_argument("--baseline", help="another run folder to compare against")
    parser.add_argument("--output", help="report folder (default reports/<run-id>/)")
    parser.add_argument(
        "--target-users",
        type=int,
        help="project how many instances this many users need",
    )
    parser.add_argument(
        "--headroom",
        type=float,
        default=0.0,
        help="share of each instance's capacity kept free in the projection (0.2 = 20 %%)",
    )
    parser.add_argument("--window", type=float, help="seconds per time window (default: auto)")
    parser.add_argument(
        "--memory-limit",
        default=MEMORY_LIMIT,
        help="most memory the queries over the results tables take before they spill to "
        f"disk (default {MEMORY_LIMIT}; more is faster on a big run)",
    )
    for option in SLO_OPTIONS:
        default = getattr(SLO(), option.field)
        parser.add_argument(
            option.flag,
            type=float,
            dest=option.field,
            metavar="SHARE" if option.field == "failure_rate" else "MS",
            help=f"SLO: {option.help} (default: the run's, else {default:g})".replace("%", "%%"),
        )


def run(args: argparse.Namespace) -> int:
    """Build the report; bad input ends in one message and exit status 2."""
    try:
        _check(args)
        files = build_report(
            args.run_dir,
            output=args.output,
            baseline=args.baseline,
            target_users=args.target_users,
            slo_overrides={o.field: getattr(args, o.field, None) for o in SLO_OPTIONS},
            window_s=args.window,
            headroom=args.headroom,
            memory_limit=args.memory_limit,
        )
    except ConfigError as error:
        print(f"wsload: error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except Exception as exc:
        import duckdb  # loaded by then: the report reads the tables with it

        if not isinstance(exc, duckdb.OutOfMemoryException):
            raise
        error = ConfigError(
            f"the report of {args.run_dir} needs more memory than --memory-limit "
            f"{args.memory_limit} lets its queries use",
            fix="pass a larger --memory-limit, as much as the machine has free "
            "(most of what is over the limit spills to disk, but not every query can)",
        )
        print(f"wsload: error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    print(f"wsload report: {files.html}")
    print(f"wsload report: {files.markdown} ({len(files.figures)} figures)")
    return 0


_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*(K|M|G|T)i?B\s*$", re.IGNORECASE)


def _check(args: argparse.Namespace) -> None:
    if args.target_users is not None and args.target_users < 1:
        raise ConfigError("--target-users must be at least 1", fix="e.g. --target-users 1000")
    if not 0 <= args.headroom < 1:
        raise ConfigError("--headroom must be in [0, 1)", fix="e.g. --headroom 0.2 for 20 %")
    if args.memory_limit is not None and not _MEMORY.match(args.memory_limit):
        raise ConfigError(
            f"--memory-limit {args.memory_limit!r} is not an amount of memory",
            fix="give a number and a unit, e.g. --memory-limit 1GB or 512MB",
        )
    if args.window is not None and args.window <= 0:
        raise ConfigError("--window must be positive", fix="e.g. --window 5")
    for option in SLO_OPTIONS:
        value = getattr(args, option.field, None)
        if value is not None and value < 0:
            raise ConfigError(f"{option.flag} must not be negative", fix=option.help)
