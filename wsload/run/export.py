"""``wsload export RUN --csv``: a run's long view as the classic ``samples.csv``.

For tools that want one row per measurement in a text file. DuckDB writes it straight
from the tables, in time order, without holding the run in memory. ``--compact`` turns
the stream parts a killed run left behind into Parquet (what a clean stop does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsload.run.long_view import COLUMNS, SCHEMA_VERSION
from wsload.run.meta import read_run_meta
from wsload.run.tables import connect, require_run_folder
from wsload.run.writer import compact_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder, e.g. results/<run-id>")
    parser.add_argument(
        "--csv",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="write the long view as CSV (default FILE: RUN/samples.csv)",
    )
    parser.add_argument(
        "--compact",
        action="store_true",
        help="compact the stream parts a killed run left into Parquet",
    )


def export_csv(folder: Path, target: Path) -> int:
    """Write ``folder``'s long view to ``target``; returns the rows written."""
    run_id = str(read_run_meta(folder).get("run_id") or "")
    picked = ", ".join(
        f"{SCHEMA_VERSION} AS v" if c == "v" else "? AS run_id" if c == "run_id" else f'"{c}"'
        for c in COLUMNS
    )
    con = connect(folder)
    try:
        quoted = str(target).replace("'", "''")
        con.execute(
            f"COPY (SELECT {picked} FROM samples ORDER BY ts, turn, arm, sub) "
            f"TO '{quoted}' (FORMAT csv, HEADER true)",
            [run_id],
        )
        return int(con.execute(f"SELECT count(*) FROM read_csv('{quoted}')").fetchone()[0])
    finally:
        con.close()


def run(args: argparse.Namespace) -> int:
    folder = require_run_folder(Path(args.run_dir))
    if args.compact:
        for path in compact_folder(folder):
            print(f"compacted {path}")
    if args.csv is not None:
        target = Path(args.csv) if args.csv else folder / "samples.csv"
        rows = export_csv(folder, target)
        print(f"{rows} rows written to {target}")
    if args.csv is None and not args.compact:
        print("nothing asked: give --csv [FILE] and/or --compact")
        return 2
    return 0
