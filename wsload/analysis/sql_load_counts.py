"""One counting pass for the report's three views of latency against load.

The report asks for the same few names (connect, auth, TTFE, e2e) per time window, per
load step and per users count. Each is a count of values per group (``sql_stats``'s
percentile tables), so one pass over those names' rows counts them for all three with
GROUPING SETS, and each table is then made from its share of the counts. The window is
the report's default (``auto_window_s``); another window is counted on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from .table_run import TableRun, _double

# the GROUPING() of (window, step, users_at) in each set: the absent keys' bits
_SETS = {"window": 3, "step": 5, "users_at": 6}
# the rows a step counts (``stats.step_percentiles``): its hold, and the opening of its ramp
STEP_ROWS = "step IS NOT NULL AND (in_hold OR name IN ('connect', 'auth'))"


def default_window_s(run: TableRun) -> float:
    from .stats import auto_window_s

    return auto_window_s(run.duration_s)


def load_counts(run: TableRun, names: Iterable[str] | None, key: str) -> str | None:
    """The SQL of the rows (``key``, name, ok, ms, n) counted for ``names`` by ``key``
    (``window`` of the default width, ``step`` or ``users_at``), or None when ``names`` is
    not a short list (all names: the per-name pass is cheaper)."""
    if names is None:
        return None
    names = sorted(set(names))
    if not names or len(names) > 8:
        return None
    table = run.answer(("load counts", tuple(names)), lambda: _count(run, names))
    return f'SELECT "{key}", name, ok, ms, n FROM {table} WHERE counted_by = {_SETS[key]}'


def _count(run: TableRun, names: list[str]) -> str:
    table = f"wsload_load_{len(run.answers)}"
    marks = ", ".join("?" for _ in names)
    window = f"CAST(floor(t_s / {_double(default_window_s(run))}) AS BIGINT)"
    run.con.execute(
        f'CREATE OR REPLACE TEMP TABLE {table} AS SELECT "window", step, users_at, name, '
        'ok, ms, count(*) AS n, GROUPING("window", step, users_at) AS counted_by FROM '
        f'(SELECT {window} AS "window", CASE WHEN {STEP_ROWS} THEN step END AS step, '
        "total_users AS users_at, name, ok, CASE WHEN ok AND NOT isnan(ms) THEN ms END AS ms "
        f"FROM {run.rows(['name', 'ok', 'ms'], 'm_users')} WHERE name IN ({marks})) "
        'GROUP BY GROUPING SETS (("window", name, ok, ms), (step, name, ok, ms), '
        "(users_at, name, ok, ms))",
        names,
    )
    return table
