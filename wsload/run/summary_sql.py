"""The end-of-run summary's facts from the results tables, out of core (DuckDB).

Three passes over the long view, none of which holds the rows: the digest (counts and
exact percentiles, ``wsload.run.digest``), the time span, and the few rows the text
quotes (probes, identity mismatches, the first failures of each id).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wsload.run import digest
from wsload.run.columns import EVENT_PREFIX
from wsload.run.long_view import long_view_sql
from wsload.run.tables import connect, turn_events_of

EXAMPLE_COLUMNS = '"user", subject, session, kind, name, ms, ok, failure, detail, ts'


def _column(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rules(events, low: float, high: float) -> str:
    """The long view's rows of the rules numbered ``low`` to ``high`` only, as a subquery
    (a filter on ``arm`` over the whole view would still unfold every turn)."""
    return f"({long_view_sql(None, events, (low, high))})"


def time_span(con, events=None) -> tuple[float | None, float | None]:
    """(first start, last end) of the measurements, health left out, as the long view has
    them: a turn's measurements all start at its start, so its last end is its start plus
    its largest value, read off its row without unfolding it."""
    if events is None:
        events = turn_events_of(con)
    parts = [
        "ttfe_ms",
        "list_max(map_values(first_ms))",
        *(_column(EVENT_PREFIX + e) for e in events),
        "list_max(gaps_ms)",
        "list_max(list_transform(spans_ms, lambda s: s.ms))",
        "intended_ms",
        "e2e_ms",
        "CASE WHEN ttft_ms IS NOT NULL THEN greatest(ttft_ms, coalesce(list_max(itl_ms), 0), "
        "coalesce(tpot_ms, 0), coalesce(output_tokens, 0), coalesce(tokens_per_s, 0)) END",
    ]
    # the largest of a turn's ends is the largest of each kind of end over the turns (the
    # rounding keeps the order): simple maxima DuckDB computes faster than one greatest
    ends = ", ".join(
        f"max(started_at + round(CAST(coalesce({part}, 0) AS DOUBLE), 3) / 1000.0)"
        for part in parts
    )
    turns = f"SELECT min(started_at) AS first, greatest({ends}) AS last FROM turns"
    others = (
        "SELECT min(ts) AS first, max(ts + coalesce(ms, 0) / 1000.0) AS last FROM "
        + rules(events, 6, 10)  # connections, probes, sessions, http
    )
    first, last = con.execute(
        f"SELECT min(first), max(last) FROM ({turns} UNION ALL {others})"
    ).fetchone()
    return first, last


def render_facts(folder: Path, per_id: int = 3) -> tuple:
    """(samples, last end, headline, digest, security lines, example lines) of a run."""
    from wsload.run.stream_summary import stream_lines
    from wsload.run.summary import (
        _headline,
        example_lines_of,
        security_lines,
    )

    con = connect(folder)
    try:
        events = turn_events_of(con)
        counted = digest.tidy(con.execute(digest.digest_sql(events=events)).df())
        first, last_end = time_span(con, events)
        (last_turn_end,) = con.execute(  # the turn:e2e rows' (arm 5), off the turns table
            "SELECT max(CAST(started_at AS DOUBLE) + "
            "coalesce(round(CAST(e2e_ms AS DOUBLE), 3), 0) / 1000.0) FROM turns"
        ).fetchone()
        quoted = con.execute(
            f"SELECT {EXAMPLE_COLUMNS} FROM {rules(events, 6, 8)} WHERE "
            "(kind IN ('probe', 'conformance') OR failure = 'identity_mismatch')"
        ).df()
        failed = con.execute(  # a turn's measurements but its e2e never fail (arms 0-4)
            f"SELECT {EXAMPLE_COLUMNS} FROM {rules(events, 5, 13)} WHERE NOT ok QUALIFY "
            "row_number() OVER (PARTITION BY coalesce(failure, 'failed') ORDER BY ts, turn, "
            "arm, sub) <= ? ORDER BY ts, turn, arm, sub",
            [per_id],
        ).df()
        streamed = con.execute(  # a streamed turn's samples (arms 3.1 to 3.5)
            f"SELECT name, ms, ok FROM {rules(events, 3.05, 3.95)}"
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
        stream_lines(streamed) if len(streamed) else [],
    )


__all__ = ["pd", "render_facts"]
