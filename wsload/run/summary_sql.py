"""The end-of-run summary's facts from the results tables, out of core (DuckDB).

Three passes over the long view, none of which holds the rows: the digest (counts and
exact percentiles, ``wsload.run.digest``), the time span, and the few rows the text
quotes (probes, identity mismatches, the first failures of each id).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wsload.run import digest
from wsload.run.tables import connect

EXAMPLE_COLUMNS = '"user", subject, session, kind, name, ms, ok, failure, detail, ts'


def render_facts(folder: Path, per_id: int = 3) -> tuple:
    """(samples, last end, headline, digest, security lines, example lines) of a run."""
    from wsload.run.summary import (
        _headline,
        example_lines_of,
        security_lines,
    )

    con = connect(folder)
    try:
        counted = digest.tidy(con.execute(digest.digest_sql()).df())
        first, last_end, last_turn_end = con.execute(
            "SELECT min(ts) FILTER (WHERE kind <> 'health'), "
            "max(ts + coalesce(ms, 0) / 1000.0) FILTER (WHERE kind <> 'health'), "
            "max(ts + coalesce(ms, 0) / 1000.0) FILTER (WHERE name = 'turn:e2e') "
            "FROM samples"
        ).fetchone()
        quoted = con.execute(
            f"SELECT {EXAMPLE_COLUMNS} FROM samples WHERE kind IN ('probe', 'conformance') "
            "OR failure = 'identity_mismatch'"
        ).df()
        failed = con.execute(
            f"SELECT {EXAMPLE_COLUMNS} FROM samples WHERE NOT ok QUALIFY row_number() OVER "
            "(PARTITION BY coalesce(failure, 'failed') ORDER BY ts, turn, arm, sub) <= ? "
            "ORDER BY ts, turn, arm, sub",
            [per_id],
        ).df()
    finally:
        con.close()
    for frame in (quoted, failed):
        for column in ("subject", "session", "failure", "detail"):
            frame[column] = frame[column].astype("string")
    turns = counted.loc[counted["name"] == "turn:e2e"]
    count = int(turns["n"].sum())
    failed_turns = int(turns.loc[~turns["ok"], "n"].sum())
    span = float(last_turn_end - first) if count and last_turn_end is not None else 0.0
    foreign = int(counted.loc[counted["failure"] == "foreign_event", "n"].sum())
    wrong = counted.loc[~counted["ok"]]
    order = wrong["n"].groupby(wrong["failure"].fillna("failed").astype(str).to_numpy()).sum()
    order = order.sort_values(ascending=False, kind="stable")
    return (
        int(counted["n"].sum()),
        None if last_end is None else float(last_end),
        _headline(count, failed_turns, span),
        counted,
        security_lines(quoted, foreign=foreign),
        example_lines_of(failed, order, per_id) if len(failed) else [],
    )


__all__ = ["pd", "render_facts"]
