"""The gate over a run's results tables, out of core (DuckDB).

The same thresholds as ``wsload.gate.evaluate`` over the same window, from a digest of
the window's measurements (``wsload.run.digest``) made in one pass over the long view;
goodput is counted row by row on the turns table, a turn and all its measurements being
one row there. Nothing but the digest is held in memory, so a run of any length gates
in the time of a few scans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from wsload.gate.config import GateConfig
from wsload.gate.thresholds import TURN_NAME
from wsload.run import digest
from wsload.run.columns import EVENT_PREFIX
from wsload.run.summary_sql import rules, time_span
from wsload.run.tables import connect, turn_events_of


def _value(expression: str) -> str:
    """A table value as the long view shows it (ms rounded to the microsecond)."""
    return f"round(CAST({expression} AS DOUBLE), 3)"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _too_slow(name: str, limit: float, events: Sequence[str] = ()) -> str | None:
    """SQL true when a turn row has a ``name`` measurement above ``limit`` ms (``events``:
    the events with a column of their own in the turns view)."""
    bound = repr(float(limit))
    if name == TURN_NAME:
        return f"{_value('e2e_ms')} > {bound}"
    if name == "turn:ttfe":
        return f"{_value('ttfe_ms')} > {bound}"
    if name == "turn:e2e_intended":
        return f"{_value('intended_ms')} > {bound}"
    if name in ("turn:ttft", "turn:tpot"):  # a streamed answer's, on the streamed turns
        column = name.removeprefix("turn:") + "_ms"
        return f"ttft_ms IS NOT NULL AND {_value(column)} > {bound}"
    if name == "turn:itl":
        return f"len(list_filter(itl_ms, lambda g: {_value('g')} > {bound})) > 0"
    if name == "turn:gap":
        return f"len(list_filter(gaps_ms, lambda g: {_value('g')} > {bound})) > 0"
    if not name.startswith("turn:"):
        return None  # connect, auth, ...: never a row of a turn
    event = name.removeprefix("turn:")
    part = _quote(event)
    first = f"map_extract_value(first_ms, {part})"
    if event in events:  # its own column (the map holds it only where a part has none)
        first = f'coalesce("{(EVENT_PREFIX + event).replace(chr(34), chr(34) * 2)}", {first})'
    return (
        f"(coalesce({_value(first)} > {bound}, false) OR "
        f"len(list_filter(spans_ms, lambda s: s.name = {part} AND {_value('s.ms')} > {bound}))"
        " > 0)"
    )


def goodput_sql(limits_ms: Mapping[str, float], events: Sequence[str] = ()) -> str:
    """(good turns, turns) among turns started at or after the parameter."""
    slow = [c for name, limit in limits_ms.items() if (c := _too_slow(name, limit, events))]
    ok = "(failure IS NULL OR failure = '')"
    good = " AND ".join([ok, *(f"NOT coalesce({c}, false)" for c in slow)])
    return f"SELECT count(*) FILTER (WHERE {good}), count(*) FROM turns WHERE started_at >= ?"


def evaluate_tables(folder: Path, config: GateConfig, *, stopped: float | None):
    """``evaluate``'s result for a folder of results tables."""
    from wsload.gate.evaluate import _evaluate_frame, _Frame

    con = connect(folder)
    try:
        events = turn_events_of(con)
        first, last = con.execute(
            "SELECT min(least(a, b)), max(greatest(a, b)) FROM ("
            "SELECT min(started_at) AS a, max(started_at) AS b FROM turns UNION ALL "
            f"SELECT min(ts), max(ts) FROM {rules(events, 6, 13)})"
        ).fetchone()
        _, last_end = time_span(con, events)
        if first is None:
            counted = digest.tidy(con.execute(digest.digest_sql("false", events=events)).df())
            frame = _Frame(counted, None, {}, lambda _: (0, 0))
            return _evaluate_frame(frame, config, None, None)
        window_start = float(first) + config.warmup_s
        window_end = float(last_end) if last_end is not None else float(last)
        if stopped is not None and stopped > window_start:
            window_end = float(stopped)
        start = f"CAST('{window_start!r}' AS DOUBLE)"  # the very float, in every rule
        inside = {"inside": f"ts >= {start}"}
        rows = con.execute(digest.digest_sql(also=("ts",), events=events, by=inside)).df()
        before = rows.groupby("name")["n"].sum().astype(int).to_dict()
        counted = digest.tidy(rows.loc[rows["inside"].astype(bool)])
        duration = window_end - window_start if window_end > window_start else None

        def goodput(limits_ms: Mapping[str, float]) -> tuple[int, int]:
            good, turns = con.execute(goodput_sql(limits_ms, events), [window_start]).fetchone()
            return int(good), int(turns)

        frame = _Frame(counted, duration, before, goodput)
        return _evaluate_frame(frame, config, window_start, window_end)
    finally:
        con.close()
