"""The turn's statistics over a ``TableRun``: turn counts, the stage order, the waterfall.

DuckDB twins of ``Run.turns``, ``Run.stages`` and ``stats.turn_waterfall``. A turn's
event rows and its e2e row all come from its row of the turns table, so when no turn is
recorded twice (``_turn_counts`` proves it) the event rows of the successful turns are
read by putting the e2e rule's conditions on the turns table, in one pass counted by
name, value and outcome for both the stage order and the waterfall; else they are joined
on node, session and turn as ``load_run`` would.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from .sql_stats import exact_quantiles, quantiles_of_counts
from .table_run import TableRun

_EVENTS = "kind = 'event' AND turn IS NOT NULL AND session IS NOT NULL"
_OK_TURNS = "kind = 'turn' AND turn IS NOT NULL AND session IS NOT NULL AND ok"
_EVENT_COLUMNS = ("session", "turn", "name", "ms")
_TURN_COLUMNS = ("node", "session", "turn", "ok", "ms")


def _event_counts(run: TableRun) -> str | None:
    """When no turn is recorded twice: a temporary table of the event rows (``_EVENTS``)
    counted by name, value and whether their turn succeeded, read in one pass for both
    the stage order and the waterfall; else None."""
    _turn_counts(run)
    if not run.answers["turns unique"]:
        return None

    def compute() -> str:
        failed = "(failure IS NOT NULL AND failure <> '')"  # the e2e rule's
        parts = [
            f"SELECT name, {ok} AS succeeded, ms, count(*) AS n FROM "
            f"({_event_rules(run, f' AND {cond}', (0, 1))}) GROUP BY ALL"
            for ok, cond in (("true", f"NOT {failed}"), ("false", failed))
        ]
        run.con.execute(
            "CREATE OR REPLACE TEMP TABLE wsload_events AS " + " UNION ALL ".join(parts)
        )
        return "wsload_events"

    return run.answer("event counts", compute)


def stage_order(run: TableRun) -> list[str]:
    """The turn's events in the order they arrive: by the median of their first arrival
    (``turn:ttfe`` left out, as ``Run.stages``)."""
    table = _event_counts(run)
    if table is None:
        medians = exact_quantiles(run, _event_rules(run, "", (0, 1)), ["name"], [0.5])
    else:
        counted = (
            f"SELECT name, ms, sum(n) AS n FROM {table} WHERE ms IS NOT NULL AND NOT isnan(ms) "
            "GROUP BY name, ms"
        )
        medians = quantiles_of_counts(run, counted, ["name"], [0.5])
    if medians.empty:
        return []
    medians["stage"] = medians["name"].astype(str).str.removeprefix("turn:")
    medians = medians.sort_values("stage").sort_values("q0", kind="stable")
    return [s for s in medians["stage"] if s != "ttfe"]


def turn_waterfall(run: TableRun, stat: str = "mean") -> pd.DataFrame:
    """``stats.turn_waterfall``: the mean (or median) first arrival of each event over the
    successful turns."""
    return run.answer(("waterfall", stat), lambda: _waterfall(run, stat)).copy()


def _event_rules(run: TableRun, turns: str, arms: tuple[float, float]) -> str:
    """The rows of ``m0`` matching ``_EVENTS`` that the long view's rules numbered ``arms``
    make of the turns matching ``turns``: the turn, session and time conditions are put on
    the turns table, so the rules make neither column for each of their rows."""
    from wsload.run.long_view import long_view_sql

    rules = long_view_sql(["ts", "kind", "name", "ms"], run.events, arms=arms)
    table = (
        "(SELECT * FROM turns WHERE turn IS NOT NULL AND NULLIF(session, '') IS NOT NULL "
        f"AND started_at IS NOT NULL{turns}) turns"
    )
    rules = re.sub(r"\bFROM turns\b", f"FROM {table}", rules)
    return f"SELECT name, ms, true AS ok FROM ({rules}) WHERE kind = 'event'"


def _ok_turn_events(run: TableRun) -> str:
    """The event rows of the successful turns: those of each turn whose e2e row succeeded
    (joined on node, session and turn); when no turn is recorded twice, each event row's
    e2e row is its own turns row's, so the event rules read only the successful turns."""
    _turn_counts(run)
    if run.answers["turns unique"]:  # the e2e rule's ``ok``
        return _event_rules(run, " AND NOT (failure IS NOT NULL AND failure <> '')", (1, 1))
    return (
        f"SELECT e.name, e.ms, true AS ok FROM (SELECT node, session, turn, name, ms FROM "
        f"{run.rows(['node', *_EVENT_COLUMNS])} WHERE {_EVENTS}) e JOIN (SELECT node, "
        f"session, turn FROM {run.rows(['node', 'session', 'turn', 'ok'])} WHERE "
        f"{_OK_TURNS}) t ON e.node = t.node AND e.session = t.session AND e.turn = t.turn"
    )


def _waterfall(run: TableRun, stat: str) -> pd.DataFrame:
    columns = ["stage", "start_ms", "end_ms", "duration_ms", "turns"]
    table = _event_counts(run)
    if table is not None:
        valued = f"SELECT name, ms, n FROM {table} WHERE succeeded AND ms IS NOT NULL"
        counts = run.df(
            f"SELECT name, sum(ms * n) / sum(n) AS at, CAST(sum(n) AS BIGINT) AS n "
            f"FROM ({valued}) GROUP BY name"
        ).set_index("name")
        if stat == "mean":
            at = counts
        else:
            counted = f"SELECT * FROM ({valued}) WHERE NOT isnan(ms)"
            at = quantiles_of_counts(run, counted, ["name"], [0.5]).set_index("name")
            at = at.rename(columns={"q0": "at"}).join(counts[["n"]])
        return _waterfall_rows(run, at, columns)
    events = _ok_turn_events(run)
    if stat == "mean":
        at = run.df(
            f"SELECT name, avg(ms) AS at, count(ms) AS n FROM ({events}) GROUP BY name"
        ).set_index("name")
    else:
        at = exact_quantiles(run, events, ["name"], [0.5]).set_index("name")
        counts = run.df(f"SELECT name, count(ms) AS n FROM ({events}) GROUP BY name")
        at = at.rename(columns={"q0": "at"}).join(counts.set_index("name"))
    return _waterfall_rows(run, at, columns)


def _waterfall_rows(run: TableRun, at: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The waterfall of ``at``: per event name, its time (``at``) and turns (``n``)."""
    rows = []
    previous = 0.0
    for stage in run.stages:
        key = f"turn:{stage}"
        if key not in at.index or not at.at[key, "n"]:
            continue
        value = float(at.at[key, "at"])
        rows.append(
            {
                "stage": stage,
                "start_ms": previous,
                "end_ms": value,
                "duration_ms": value - previous,
                "turns": int(at.at[key, "n"]),
            }
        )
        previous = max(previous, value)
    return pd.DataFrame(rows, columns=columns)


def _turn_counts(run: TableRun) -> tuple[int, int, float]:
    """(turns, successful turns, their mean e2e ms): a turn is its last e2e row, as
    ``load_run`` keeps it; a turn recorded twice is counted once."""

    def compute() -> tuple[int, int, float]:
        # distinct hashes prove distinct turns (a collision only takes the slower way)
        rows, distinct, ok, mean = run.one(
            "SELECT count(*), count(DISTINCT hash(node, session, turn)), "
            f"count(*) FILTER (WHERE ok), avg(ms) FILTER (WHERE ok) FROM {run.rows(_TURN_COLUMNS)} "
            "WHERE kind = 'turn' AND turn IS NOT NULL"
        )
        run.answers["turns unique"] = rows == distinct
        if rows != distinct:
            rows, ok, mean = run.one(
                "SELECT count(*), count(*) FILTER (WHERE ok), avg(ms) FILTER (WHERE ok) FROM "
                "(SELECT DISTINCT ON (node, session, turn) ok, ms FROM "
                f"{run.rows([*_TURN_COLUMNS, 'arm', 'sub'])} WHERE kind = 'turn' "
                "AND turn IS NOT NULL ORDER BY node, session, turn, ts DESC, arm DESC, sub DESC)"
            )
        return int(rows), int(ok), math.nan if mean is None else float(mean)

    return run.answer("turn counts", compute)


def ok_turns_e2e(run: TableRun) -> tuple[int, float]:
    """(successful turns, their mean e2e ms)."""
    _, ok, mean = _turn_counts(run)
    return ok, mean
