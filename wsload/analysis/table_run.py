"""``load_table_run``: a run folder's tables opened in DuckDB, for analysis out of core.

``load_run`` gives every measurement as a pandas row, which a run of millions of turns
cannot afford. A ``TableRun`` holds only what is small (``run.json``, the steps, the
users timeline, the generator-health rows) and a DuckDB connection whose view ``m`` is
the long view (``wsload.run.long_view``) with the columns the analysis adds to it: the
seconds since the start, the end of each measurement, its load step and whether it ended
during the step's hold. The functions of ``wsload.analysis`` given a ``TableRun`` answer
with DuckDB queries over ``m``, with the same numbers as over ``load_run``'s frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsload.run.meta import crash_notice
from wsload.run.tables import connect, has_tables, require_run_folder, turn_events_of

from .run import Run, _health, _read_meta, load_run, merge_timeline, resolve_run_path
from .steps import derive_steps, empty_steps, read_steps_file, users_timeline

# The long view without health rows, with what the analysis adds. ``ended`` is the epoch
# end (``ts`` plus the latency) as load_run compares it with the steps, ``end_s`` the same
# in seconds since the start, as load_run places it on the users timeline. The view ``m0``
# has the columns below; each query of ``wsload.analysis`` asks ``TableRun.rows`` for the
# few it reads: DuckDB makes every column of a UNION ALL's arms, read or not.
OTHER_RULES = (6.0, 10.99)  # the rules of connections, probes, sessions and http
NAME_COUNTS = "wsload_names"  # every measurement counted by name, outcome and value
M0_COLUMNS = ("node", "ts", "user", "subject", "session", "turn", "kind", "name", "ms", "ok",
              "failure", "users", "arm", "sub")  # fmt: skip


def _measurements(
    origin: float,
    keep: Sequence[str],
    events: Sequence[str],
    arms: tuple[float, float] | None = None,
) -> str:
    """The rows of ``m0`` with only the long view's ``keep`` columns (``kind`` and ``ts``
    always): ``t_s``; with ``ms``, ``ended`` and ``end_s``."""
    from wsload.run.long_view import long_view_sql

    columns = list(dict.fromkeys([*keep, "kind", "ts"]))
    picked = ["coalesce(users, 0) AS users" if c == "users" else f'"{c}"' for c in columns]
    start = _double(origin)
    picked.append(f"ts - {start} AS t_s")
    if "ms" in columns:
        picked.append("ts + coalesce(ms, 0) / 1000.0 AS ended")
        picked.append(f"(ts - {start}) + coalesce(ms, 0) / 1000.0 AS end_s")
    view = long_view_sql(keep=columns, events=events, arms=arms)
    return f"SELECT {', '.join(picked)} FROM ({view}) WHERE kind <> 'health' AND ts IS NOT NULL"


# Its step: a measurement belongs to the last step it ended in (load_run's assign_steps);
# with up to _INLINE_STEPS steps as CASE expressions, else by joining the steps table.
_INLINE_STEPS = 200
_STEPPED = """
SELECT m0.*, s.step, s.users AS step_users,
       coalesce((SELECT bool_or(m0.ended >= h.hold_start) FROM wsload_steps h
                 WHERE m0.ended >= h."start" AND m0.ended < h."end"), false) AS in_hold
FROM m0 LEFT JOIN wsload_steps s ON s.step = (
    SELECT max(x.step) FROM wsload_steps x WHERE m0.ended >= x."start" AND m0.ended < x."end")
"""


@dataclass(frozen=True)
class TableRun:
    """One run folder, queried where it lies. ``con`` has the view ``m`` (every measurement
    but health) and ``m_users`` (``m`` with ``total_users``, the users running across all
    nodes when each measurement ended); the small tables are DataFrames as in ``Run``."""

    path: Path
    meta: dict[str, Any]
    started: float
    con: Any  # duckdb.DuckDBPyConnection
    health: pd.DataFrame
    steps: pd.DataFrame
    timeline: pd.DataFrame
    nodes: list[str]
    last_sample_end: float | None
    stages: list[str] = field(default_factory=list)
    answers: dict[Any, Any] = field(default_factory=dict, repr=False)  # see ``answer``
    events: list[str] = field(default_factory=list)  # the turns' event columns
    layers: dict[str, str] = field(default_factory=dict, repr=False)  # see ``rows``

    run_id = Run.run_id
    stopped_cleanly = Run.stopped_cleanly
    stopped = Run.stopped
    duration_s = Run.duration_s
    options = Run.options
    max_users = Run.max_users

    @property
    def crash_notice(self) -> str | None:
        return crash_notice(self.meta, self.last_sample_end)

    def answer(self, key: Any, compute: Any) -> Any:
        """``compute()``, once per ``key``: the report asks some questions twice."""
        if key not in self.answers:
            self.answers[key] = compute()
        return self.answers[key]

    def rows(self, columns: Sequence[str], view: str = "m0", *, turns: bool = True) -> str:
        """The SQL of ``view`` (``m0``, ``m`` or ``m_users``) with only the long view's
        ``columns`` (and ``kind``, ``ts``, ``t_s``; with ``ms`` the end columns), as a
        parenthesised subquery: a query reading few columns is several times faster.
        ``turns=False`` leaves out the turns' rules (every name they make starts with
        ``turn:``): for a query of other names."""
        if view in ("m", "m_users"):
            columns = [*columns, "ms"]
        if view == "m_users":
            columns = [*columns, "users"]
        sql = _measurements(self.started, columns, self.events, None if turns else OTHER_RULES)
        if view in ("m", "m_users"):
            sql = self.layers["m"].replace("{m0}", f"({sql})")
        if view == "m_users":
            sql = self.layers["m_users"].replace("{m}", f"({sql})")
        return f"({sql})"

    def df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()

    def one(self, sql: str, params: list[Any] | None = None) -> tuple:
        return self.con.execute(sql, params or []).fetchone()

    def close(self) -> None:
        self.con.close()


def is_table_run(run: Any) -> bool:
    return isinstance(run, TableRun)


def open_run(path: str | Path, *, memory_limit: str | None = None) -> TableRun | Run:
    """A ``TableRun`` for a folder of results tables, else (a classic ``samples.csv``)
    ``load_run``'s ``Run``; ``ConfigError`` as ``load_run`` for what is not a usable run."""
    folder = resolve_run_path(path)
    if not folder.is_dir() or not has_tables(folder):
        return load_run(path)
    require_run_folder(folder)
    return load_table_run(folder, memory_limit=memory_limit)


def load_table_run(folder: Path, *, min_hold_s: float = 2.0, memory_limit: str | None = None):
    """Open ``folder``'s tables (see the module doc); ConfigError when it holds no samples."""
    from wsload.errors import ConfigError
    from wsload.run.long_view import long_view_sql

    meta = _read_meta(folder)
    con = connect(folder, memory_limit=memory_limit)
    events = turn_events_of(con)
    # the first start and whether there is any row: every turn has its e2e row, all of a
    # turn's rows start at its start, so the turns are read without unfolding them
    others = long_view_sql(keep=["ts"], events=events, arms=(6, 14))
    first, total = con.execute(
        "SELECT min(first), sum(n) FROM (SELECT min(started_at) AS first, count(*) AS n "
        f"FROM turns UNION ALL SELECT min(ts), count(*) FROM ({others}))"
    ).fetchone()
    if not total:
        con.close()
        raise ConfigError(
            f"{folder} holds no samples", fix="give a run that ran long enough to record some"
        )
    started = meta.get("started")
    origin = float(first)
    if isinstance(started, int | float) and started <= origin + 1.0:
        origin = float(started)
    con.execute("CREATE TEMP TABLE wsload_origin AS SELECT CAST(? AS DOUBLE) AS origin", [origin])
    con.execute(f"CREATE TEMP VIEW m0 AS {_measurements(origin, M0_COLUMNS, events)}")
    health = _health_rows(con, origin)
    last_counts = _last_counts(con, origin, events)
    timeline = merge_timeline(users_timeline(last_counts, origin), health, origin)
    steps = read_steps_file(folder)
    if steps is None:
        steps = derive_steps(timeline, origin, min_hold_s) if len(timeline) else empty_steps()
    for column in ("start", "end"):
        steps[f"{column}_time"] = pd.to_datetime(steps[column], unit="s", utc=True)
    layers = {"m": _steps_layer(con, steps), "m_users": _users_layer(con, timeline)}
    con.execute("CREATE TEMP VIEW m AS " + layers["m"].replace("{m0}", "m0"))
    con.execute("CREATE TEMP VIEW m_users AS " + layers["m_users"].replace("{m}", "m"))
    nodes = sorted(str(n) for n in last_counts["node"].dropna().unique())
    last = last_counts["ts"].max() if len(last_counts) else None
    run = TableRun(
        path=folder,
        meta=meta,
        started=origin,
        con=con,
        health=health,
        steps=steps,
        timeline=timeline,
        nodes=nodes,
        last_sample_end=None if last is None else float(last),
        events=events,
        layers=layers,
    )
    run.answers["name counts"] = NAME_COUNTS  # made by _last_counts
    from .sql_turns import stage_order

    run.stages.extend(stage_order(run))
    return run


def _health_rows(con: Any, origin: float) -> pd.DataFrame:
    rows = con.execute(
        "SELECT node, ts, name, ms AS latency_ms FROM samples WHERE kind = 'health' "
        "AND ts IS NOT NULL ORDER BY ts, arm"
    ).df()
    rows["node"] = rows["node"].astype("string")
    rows["name"] = rows["name"].astype("string")
    rows["time"] = pd.to_datetime(rows["ts"], unit="s", utc=True)
    return _health(rows, origin)


def _last_counts(con: Any, origin: float, events: Sequence[str]) -> pd.DataFrame:
    """Per node and second, the last users count a measurement ended with (what
    ``users_timeline`` keeps of every row), in the order load_run reads the rows.

    One pass keeps, per node, second and users count, the latest end: cheap keys, no row
    order. Only a second whose latest end two counts share needs the order of the rows
    (start, turn, rule, element), and then a second pass finds it. The same pass counts
    every measurement by name, outcome and value into ``NAME_COUNTS`` (see
    ``sql_stats.name_counts``): the long view is read once for both."""
    second = f"floor((ended - {_double(origin)}) / 1.0)"
    rows = _measurements(origin, ("node", "ms", "users", "name", "ok"), events)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE wsload_pass AS SELECT node, second, users, name, ok, "
        "value, max(ended) AS ts, count(*) AS n, GROUPING(node) AS by_name FROM (SELECT "
        f"node, users, name, ok, ended, {second} AS second, "
        f"CASE WHEN ok AND NOT isnan(ms) THEN ms END AS value FROM ({rows})) "
        "GROUP BY GROUPING SETS ((node, second, users), (name, ok, value))"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {NAME_COUNTS} AS SELECT name, ok, value AS ms, n "
        "FROM wsload_pass WHERE by_name = 1"
    )
    latest = con.execute(
        "WITH per AS (SELECT node, second, users, ts FROM wsload_pass WHERE by_name = 0), "
        "ranked AS (SELECT *, max(ts) OVER (PARTITION BY node, second) AS top FROM per) "
        "SELECT node, ts, users, count(*) OVER (PARTITION BY node, second) AS ties "
        "FROM ranked WHERE ts = top OR (ts IS NULL AND top IS NULL)"
    ).df()
    con.execute("DROP TABLE wsload_pass")
    if len(latest) and int(latest["ties"].max()) == 1:
        return latest[["node", "ts", "users"]]
    rows = _measurements(origin, ("node", "ms", "users", "turn", "arm", "sub"), events)
    return con.execute(
        "SELECT node, max(ended) AS ts, arg_max(users, (ended, ts, "
        "coalesce(turn, 9223372036854775807), arm, sub)) AS users "
        f"FROM ({rows}) GROUP BY node, {second}"
    ).df()


def _double(value: float) -> str:
    """A float as an exact DuckDB DOUBLE (a bare decimal literal would be a DECIMAL)."""
    return f"CAST('{float(value)!r}' AS DOUBLE)"


def _steps_layer(con: Any, steps: pd.DataFrame) -> str:
    """The SQL of ``m``: the rows of ``{m0}`` with ``step``, ``step_users`` and ``in_hold``
    (see ``_STEPPED``)."""
    if len(steps) > _INLINE_STEPS:
        table = steps[["step", "users", "start", "hold_start", "end"]]
        con.register("wsload_steps", table.astype({"step": "int64", "users": "int64"}))
        return _STEPPED.replace("FROM m0 LEFT", "FROM {m0} m0 LEFT")
    if steps.empty:
        return (
            "SELECT *, CAST(NULL AS BIGINT) AS step, "
            "CAST(NULL AS BIGINT) AS step_users, false AS in_hold FROM {m0}"
        )
    inside, held, number, users = [], [], [], []
    for row in steps.iloc[::-1].itertuples(index=False):  # the last step matching wins
        within = f"ended >= {_double(row.start)} AND ended < {_double(row.end)}"
        inside.append(within)
        held.append(f"({within} AND ended >= {_double(row.hold_start)})")
        number.append(f"WHEN {within} THEN {int(row.step)}")
        users.append(f"WHEN {within} THEN {int(row.users)}")
    return (
        f"SELECT *, CAST(CASE {' '.join(number)} END AS BIGINT) AS step, "
        f"CAST(CASE {' '.join(users)} END AS BIGINT) AS step_users, "
        f"({' OR '.join(held)}) AS in_hold FROM {{m0}}"
    )


def _users_layer(con: Any, timeline: pd.DataFrame) -> str:
    """The SQL of ``m_users``: the rows of ``{m}`` with the users running across nodes at
    each measurement's end (the last timeline second at or before it, never less than
    the row's own count)."""
    if timeline.empty:
        return "SELECT *, users AS total_users FROM {m}"
    table = timeline[["t_s", "users"]].astype({"users": "int64"})
    con.register("wsload_timeline", table.assign(i=np.arange(len(table), dtype="int64")))
    first = int(timeline["users"].iloc[0])
    t_s = timeline["t_s"].to_numpy(dtype=float)
    if (t_s == t_s[0] + np.arange(len(t_s))).all():  # one row a second: look it up
        start, last = int(t_s[0]), len(t_s) - 1
        return (
            "SELECT m.*, greatest(tl.users, m.users) AS total_users "
            "FROM {m} m JOIN wsload_timeline tl ON tl.i = "
            f"least(greatest(CAST(floor(m.end_s) AS BIGINT) - {start}, 0), {last})"
        )
    return (
        "SELECT m.*, greatest(coalesce(tl.users, "
        f"{first}), m.users) AS total_users FROM {{m}} m ASOF LEFT JOIN wsload_timeline tl "
        "ON m.end_s >= tl.t_s"
    )


__all__ = ["TableRun", "is_table_run", "load_table_run", "open_run", "users_timeline"]
