"""The statistics of ``wsload.analysis.stats`` over a ``TableRun``: DuckDB queries.

Each function answers with the same table as its pandas twin over ``load_run``'s frames,
but only the answer is ever in memory: groups are counted in DuckDB, and percentiles
come from the successful values counted per group (latencies are kept to the
microsecond, so a group holds few distinct values however many rows): for each group and
quantile DuckDB finds the two values at the linear ranks, and the formula of the pandas
call the twin makes interpolates between them here (a grouped quantile's, or a Series'
that numpy computes), so the numbers are pandas' to the last bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .sql_load_counts import STEP_ROWS, default_window_s, load_counts
from .table_run import NAME_COUNTS, TableRun

QUANTILES = (0.50, 0.95, 0.99)
OPENING = ("connect", "auth")


def _pcol(q: float) -> str:
    return f"p{round(q * 100):d}_ms" if round(q * 100) == q * 100 else f"p{q * 100:g}_ms"


def _q(q: float) -> float:
    """The fraction numpy sees: pandas' quantile passes q as a percentage, numpy divides."""
    return float(np.true_divide(q * 100.0, 100))


def _names_filter(names: Iterable[str] | None) -> tuple[str, list]:
    if names is None:
        return "", []
    names = list(names)
    if not names:
        return " AND false", []
    return f" AND name IN ({', '.join('?' for _ in names)})", names


def exact_quantiles(
    run: TableRun,
    source: str,
    keys: Sequence[str],
    quantiles: Sequence[float],
    params: list | None = None,
    *,
    grouped: bool = False,
) -> pd.DataFrame:
    """Per group of ``keys`` over the rows ``source`` selects (with ``ms`` and ``ok``):
    the linear percentile of the successful values for each quantile (a fraction), as
    columns ``q0``, ``q1`` ...: numpy's, or with ``grouped`` pandas' groupby quantile's."""
    cols = ", ".join(f'"{k}"' for k in keys)
    counted = (
        f"SELECT {cols + ', ' if keys else ''}ms, count(*) AS n FROM ({source}) "
        "WHERE ok AND ms IS NOT NULL AND NOT isnan(ms) GROUP BY ALL"
    )
    return quantiles_of_counts(run, counted, keys, quantiles, params, grouped=grouped)


def quantiles_of_counts(
    run: TableRun,
    counted: str,
    keys: Sequence[str],
    quantiles: Sequence[float],
    params: list | None = None,
    *,
    grouped: bool = False,
) -> pd.DataFrame:
    """``exact_quantiles`` from the rows of ``counted``: (keys, ms, n), each value of a
    group once with its count ``n``."""
    cols = ", ".join(f'"{k}"' for k in keys)
    part = f"PARTITION BY {cols}" if keys else ""
    picks = []
    for i, q in enumerate(quantiles):
        lower = f"floor((total - 1) * CAST('{q!r}' AS DOUBLE))"
        picks.append(f"min(ms) FILTER (WHERE upto > {lower}) AS a{i}")
        picks.append(f"min(ms) FILTER (WHERE upto > {lower} + 1) AS b{i}")
    group = f"GROUP BY {cols}" if keys else ""
    sql = (
        f"WITH vals AS ({counted}), cum AS (SELECT *, sum(n) OVER ({part} ORDER BY ms "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS upto, "
        f"sum(n) OVER ({part}) AS total FROM vals) "
        f"SELECT {cols + ', ' if keys else ''}CAST(any_value(total) AS BIGINT) AS total, "
        f"min(ms) AS lo, max(ms) AS hi, {', '.join(picks)} FROM cum {group}"
    )
    frame = run.df(sql, params)
    total = frame["total"].to_numpy(dtype=float)
    out = frame[list(keys)].copy()
    for i, q in enumerate(quantiles):
        virtual = (total - 1) * q
        lower = np.floor(virtual)
        gamma = virtual - lower
        a = frame[f"a{i}"].to_numpy(dtype=float)
        b = frame[f"b{i}"].to_numpy(dtype=float)
        diff = b - a
        with np.errstate(invalid="ignore"):
            if grouped:  # pandas' group_quantile: val + (next_val - val) * frac
                value = np.where(gamma == 0.0, a, a + diff * gamma)
            else:  # numpy's _lerp
                value = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
        value = np.where(virtual >= total - 1, frame["hi"].to_numpy(dtype=float), value)
        out[f"q{i}"] = np.where(virtual < 0, frame["lo"].to_numpy(dtype=float), value)
    return out


def percentile_table(
    run: TableRun,
    where: str = "true",
    by: Sequence[str] = (),
    names: Iterable[str] | None = None,
    quantiles: Sequence[float] = QUANTILES,
    *,
    view: str = "m0",
    extra: str = "",
    params: list | None = None,
    columns: Sequence[str] = (),
    max_groups: int | None = None,
    counted: str | None = None,
) -> pd.DataFrame:
    """``stats.percentile_table`` over the rows of ``view`` matching ``where`` (``extra``:
    more columns computed per row, e.g. a window; ``params`` for ``where``; ``columns``:
    the long view's columns ``where`` and ``extra`` read besides name, ok and ms;
    ``max_groups``: more distinct values of the first of ``by`` are binned, see ``_bin``;
    ``counted``: the SQL of those rows already counted, (keys, ok, ms, n))."""
    rows = run.rows(["name", "ok", "ms", *columns], view)
    keys = [*by, "name"]
    columns = [*keys, "count", "failures", "failure_rate"]
    columns += [_pcol(q) for q in quantiles] + ["mean_ms", "max_ms"]
    named, name_params = _names_filter(names)
    nonnull = " AND ".join(f'"{k}" IS NOT NULL' for k in keys)
    source = (
        f"SELECT * FROM (SELECT *{', ' + extra if extra else ''} FROM {rows} "
        f"WHERE ({where}){named}) WHERE {nonnull}"
    )
    args = [*(params or []), *name_params]
    cols = ", ".join(f'"{k}"' for k in keys)
    if not by and view == "m0" and where == "true" and not extra:  # per name: counted once
        counted = f"SELECT name, ok, ms, n FROM {name_counts(run)}"
    count = "count(*)"
    if counted is not None:
        source = f"SELECT * FROM ({counted}) WHERE {nonnull}{named}"
        count, args = "CAST(sum(n) AS BIGINT)", name_params
    # one pass over the rows: each group's values counted, the failures apart
    run.con.execute(
        f"CREATE OR REPLACE TEMP TABLE wsload_counted AS SELECT {cols}, ok, "
        f"CASE WHEN ok AND NOT isnan(ms) THEN ms END AS ms, {count} AS n "
        f"FROM ({source}) GROUP BY ALL",
        args,
    )
    if max_groups is not None:
        _bin(run, keys, max_groups)
    counts = run.df(
        f"SELECT {cols}, sum(n) AS count, coalesce(sum(n) FILTER (WHERE NOT ok), 0) AS failures, "
        "sum(ms * n) / sum(n) FILTER (WHERE ms IS NOT NULL) AS mean_ms, max(ms) AS max_ms "
        "FROM wsload_counted GROUP BY ALL"
    )
    if counts.empty:
        return pd.DataFrame(columns=columns)
    table = counts.set_index(keys).sort_index()
    table["count"] = table["count"].astype("int64")
    table["failures"] = table["failures"].astype("int64")
    table["failure_rate"] = table["failures"] / table["count"]
    if len(quantiles):
        counted = f"SELECT {cols}, ms, n FROM wsload_counted WHERE ms IS NOT NULL"
        per_q = quantiles_of_counts(run, counted, keys, list(quantiles), grouped=True)
        per_q = per_q.set_index(keys)
        per_q.columns = [_pcol(q) for q in quantiles]
        table = table.join(per_q)
    table = table.reindex(columns=columns[len(keys) :])
    return table.reset_index()


def _bin(run: TableRun, keys: Sequence[str], max_groups: int) -> None:
    """Bin the first of ``keys`` in ``wsload_counted`` as ``stats._total_users_at``'s
    callers bin users: more than ``max_groups`` distinct values make bins of equal width,
    labelled by their largest value (the counts of a bin's values summed)."""
    key = f'"{keys[0]}"'
    distinct, top = run.one(f"SELECT count(DISTINCT {key}), max({key}) FROM wsload_counted")
    if not distinct or distinct <= max_groups:
        return
    width = int(np.ceil(top / max_groups))
    rest = ", ".join(f'"{k}"' for k in keys[1:])
    run.con.execute(
        "CREATE OR REPLACE TEMP TABLE wsload_binned AS SELECT "
        f"CAST(ceil({key} / {width}) AS BIGINT) * {width} AS {key}, {rest}, ok, ms, "
        "CAST(sum(n) AS BIGINT) AS n FROM wsload_counted GROUP BY ALL"
    )
    run.con.execute("DROP TABLE wsload_counted")
    run.con.execute("ALTER TABLE wsload_binned RENAME TO wsload_counted")


def name_counts(run: TableRun) -> str:
    """A temporary table of every measurement counted by name, outcome and value (the
    value of failures left out): the per-name table and the overview's sample counts
    come from this one pass over all the rows."""

    def compute() -> str:  # load_table_run makes it along with the users timeline
        run.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {NAME_COUNTS} AS SELECT name, ok, "
            "CASE WHEN ok AND NOT isnan(ms) THEN ms END AS ms, count(*) AS n "
            f"FROM {run.rows(['name', 'ok', 'ms'])} GROUP BY ALL"
        )
        return NAME_COUNTS

    return run.answer("name counts", compute)


def window_table(run: TableRun, window_s: float, names: Iterable[str] | None) -> pd.DataFrame:
    """Percentiles per time window of ``window_s`` (by start) and name."""
    counted = None
    if window_s == default_window_s(run):
        counted = load_counts(run, names, "window")
    return percentile_table(
        run,
        by=["window"],
        names=names,
        extra='CAST(floor(t_s / CAST(? AS DOUBLE)) AS BIGINT) AS "window"',
        params=[window_s],
        counted=counted,
    )


def step_percentiles(run: TableRun, names: Iterable[str] | None = None) -> pd.DataFrame:
    key = ("steps", None if names is None else tuple(names))
    return run.answer(key, lambda: _step_percentiles(run, names)).copy()


def _step_percentiles(run: TableRun, names: Iterable[str] | None) -> pd.DataFrame:
    table = percentile_table(
        run, STEP_ROWS, ["step"], names, view="m", counted=load_counts(run, names, "step")
    )
    users = run.steps.set_index("step")["users"]
    table.insert(1, "users", table["step"].map(users).astype(int))
    return table


def _users_column(
    run: TableRun, where: str, params: list, max_groups: int, *, turns: bool = True
) -> str:
    """The SQL of ``total_users``, binned as ``stats._total_users_at``'s callers bin it
    when the rows matching ``where`` hold more than ``max_groups`` distinct counts."""
    distinct, top = run.one(
        "SELECT count(DISTINCT total_users), max(total_users) FROM "
        f"{run.rows(['name'], 'm_users', turns=turns)} WHERE {where}",
        params,
    )
    if not distinct or distinct <= max_groups:
        return "total_users"
    width = int(np.ceil(top / max_groups))
    return f"CAST(ceil(total_users / {width}) AS BIGINT) * {width}"


def percentiles_by_users(
    run: TableRun, names: Iterable[str], min_count: int = 5, max_groups: int = 25
) -> pd.DataFrame:
    names = list(names)
    if len(run.steps) >= 2:
        table = step_percentiles(run, names)
        table["basis"] = "step"
        return table
    named, params = _names_filter(names)
    table = percentile_table(
        run,
        f"true{named}",
        by=["users_at"],
        view="m_users",
        extra="total_users AS users_at",
        params=params,
        max_groups=max_groups,
        counted=load_counts(run, names, "users_at"),
    ).rename(columns={"users_at": "users"})
    if table.empty:
        table = pd.DataFrame(columns=["users", *table.columns[1:]])
    share = table["count"] / table.groupby("name")["count"].transform("sum")
    table = table.loc[(table["count"] >= min_count) | (share >= 0.02)].reset_index(drop=True)
    table["basis"] = "concurrency"
    return table


def failure_summary(run: TableRun) -> pd.DataFrame:
    columns = ["failure", "count", "share", "names", "first_s", "last_s"]
    table = run.df(
        "SELECT coalesce(failure, 'unknown') AS failure, count(*) AS count, "
        "list(DISTINCT name) AS names, min(t_s) AS first_s, max(t_s) AS last_s "
        f"FROM {run.rows(['failure', 'name', 'ok'])} WHERE NOT ok GROUP BY ALL"
    )
    if table.empty:
        return pd.DataFrame(columns=columns)
    table = table.sort_values("failure").reset_index(drop=True)
    table["count"] = table["count"].astype("int64")
    table["names"] = [", ".join(sorted(str(n) for n in names)) for names in table["names"]]
    table["share"] = table["count"] / table["count"].sum()
    table = table.sort_values("count", ascending=False, kind="stable")
    return table[columns].reset_index(drop=True)


def failures_over_time(run: TableRun, window_s: float) -> pd.DataFrame:
    counts = run.df(
        'SELECT CAST(floor(t_s / CAST(? AS DOUBLE)) AS BIGINT) AS "window", '
        "coalesce(failure, 'unknown') AS failure, count(*) AS count FROM "
        f"{run.rows(['failure', 'ok'])} WHERE NOT ok "
        'GROUP BY ALL ORDER BY "window", failure',
        [window_s],
    )
    if counts.empty:
        return pd.DataFrame(columns=["window", "t_s", "failure", "count"])
    counts["count"] = counts["count"].astype("int64")
    counts.insert(1, "t_s", counts["window"] * window_s)
    return counts


def auth_failures_by_users(run: TableRun, name: str = "auth", max_groups: int = 25):
    columns = ["users", "attempts", "failures", "failure_rate"]
    turns = name.startswith("turn:")
    users = _users_column(run, "name = ?", [name], max_groups, turns=turns)
    table = run.df(
        f"SELECT {users} AS users, count(*) AS attempts, count(*) FILTER (WHERE NOT ok) "
        f"AS failures FROM {run.rows(['name', 'ok'], 'm_users', turns=turns)} WHERE name = ? "
        "GROUP BY ALL ORDER BY users",
        [name],
    )
    if table.empty:
        return pd.DataFrame(columns=columns)
    table = table.astype({"users": "int64", "attempts": "int64", "failures": "int64"})
    table["failure_rate"] = table["failures"] / table["attempts"]
    return table[columns]


def overview(run: TableRun) -> dict[str, int]:
    """Turns (and how many succeeded), sessions (opened and authenticated), samples (and
    how many failed), counted as ``load_run``'s tables count them."""
    from .sql_turns import _turn_counts

    turns, ok_turns, _ = _turn_counts(run)
    # a turn's rows all carry its e2e row's session: the rows from the e2e arm on suffice
    sessions, ok_sessions = run.one(
        "SELECT count(*), count(*) FILTER (WHERE connects > 0 AND opened) FROM (SELECT "
        "count(*) FILTER (WHERE name = 'connect') AS connects, coalesce(bool_and(ok) FILTER "
        "(WHERE name IN ('connect', 'auth')), true) AS opened FROM "
        f"{run.rows(['node', 'session', 'name', 'ok', 'arm'])} "
        "WHERE session IS NOT NULL AND arm >= 5 GROUP BY node, session)"
    )
    samples, failed = run.one(
        "SELECT coalesce(sum(n), 0), coalesce(sum(n) FILTER (WHERE NOT ok), 0) "
        f"FROM {name_counts(run)}"
    )
    return {
        "turns": int(turns),
        "ok_turns": int(ok_turns),
        "sessions": int(sessions),
        "ok_sessions": int(ok_sessions),
        "samples": int(samples),
        "failed": int(failed),
    }


def step_counts(run: TableRun, rated: Sequence[str], e2e_limit_ms: float) -> pd.DataFrame:
    """Per step: attempts and failures of the ``rated`` names and of auth (what ended in
    its hold, plus the connects and auths of its ramp), turns that ended in its hold and
    those that succeeded within ``e2e_limit_ms``."""
    marks = ", ".join("?" for _ in rated)
    counted = "step IS NOT NULL AND (in_hold OR name IN ('connect', 'auth'))"
    frame = run.df(
        "SELECT step, "
        f"count(*) FILTER (WHERE {counted} AND name IN ({marks})) AS attempts, "
        f"count(*) FILTER (WHERE {counted} AND name IN ({marks}) AND NOT ok) AS failed, "
        f"count(*) FILTER (WHERE {counted} AND name = 'auth') AS auths, "
        f"count(*) FILTER (WHERE {counted} AND name = 'auth' AND NOT ok) AS auth_failed, "
        "count(*) FILTER (WHERE in_hold AND kind = 'turn' AND turn IS NOT NULL) AS turns, "
        "count(*) FILTER (WHERE in_hold AND kind = 'turn' AND turn IS NOT NULL AND ok AND "
        "ms <= CAST(? AS DOUBLE)) AS good "
        f"FROM {run.rows(['name', 'turn', 'ok'], 'm')} WHERE step IS NOT NULL "
        # the rows any count takes, in terms DuckDB pushes into the long view's rules (so
        # the rules of other names are not read at all)
        f"AND (name IN ({marks}, 'auth') OR kind = 'turn') GROUP BY step",
        [*rated, *rated, e2e_limit_ms, *rated],
    )
    return frame.set_index("step")


def stream_figures(run: TableRun) -> list:
    """``wsload.run.stream_summary.stream_figures`` of the run's streamed answers."""
    from wsload.run.stream_summary import STREAM_ROWS, StreamFigures

    source = f"SELECT name, ms, ok FROM {run.rows(['name', 'ms', 'ok'])} WHERE kind = 'stream'"
    counts = run.df(
        f"SELECT name, count(ms) AS n, avg(ms) AS mean FROM ({source}) WHERE ok GROUP BY name"
    ).set_index("name")
    if counts.empty:
        return []
    found = exact_quantiles(run, source, ["name"], [_q(0.5), _q(0.9), _q(0.99)]).set_index("name")
    return [
        StreamFigures(name, label, unit, int(counts.at[name, "n"]),
                      *(float(found.at[name, f"q{i}"]) for i in range(3)),
                      float(counts.at[name, "mean"]))
        for name, label, unit in STREAM_ROWS
        if name in counts.index and counts.at[name, "n"]
    ]  # fmt: skip
