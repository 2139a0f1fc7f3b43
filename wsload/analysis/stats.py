"""Percentiles and counts over a loaded run: overall, per time window, per step, per failure.

Percentiles are exact (from the raw rows) and taken over successful samples only, like the
end-of-run summary, so a fast failure never makes latency look better than it was. Every
function returns a tidy DataFrame: one row per (group, name).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .run import Run
from .table_run import TableRun, is_table_run

QUANTILES = (0.50, 0.95, 0.99)
_NICE_WINDOWS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def auto_window_s(duration_s: float, target_windows: int = 40) -> float:
    """A round window length that cuts the run into about ``target_windows`` windows."""
    wanted = max(duration_s, 1.0) / target_windows
    for nice in _NICE_WINDOWS_S:
        if nice >= wanted:
            return float(nice)
    return float(_NICE_WINDOWS_S[-1])


def percentile_table(
    samples: pd.DataFrame,
    by: Sequence[str] = (),
    names: Iterable[str] | None = None,
    quantiles: Sequence[float] = QUANTILES,
) -> pd.DataFrame:
    """Per ``by`` group and stats name: count, failures, failure_rate, p50/p95/p99/mean/max ms."""
    keys = [*by, "name"]
    frame = samples if names is None else samples.loc[samples["name"].isin(list(names))]
    columns = [*keys, "count", "failures", "failure_rate"]
    columns += [_pcol(q) for q in quantiles] + ["mean_ms", "max_ms"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    grouped = frame.assign(failed=~frame["ok"].astype(bool)).groupby(
        keys, observed=True, dropna=True
    )
    table = pd.DataFrame({"count": grouped.size(), "failures": grouped["failed"].sum()})
    table["failure_rate"] = table["failures"] / table["count"]
    good = frame.loc[frame["ok"]].groupby(keys, observed=True, dropna=True)["latency_ms"]
    if len(quantiles):
        per_q = good.quantile(list(quantiles)).unstack(-1)
        per_q.columns = [_pcol(q) for q in per_q.columns]
        table = table.join(per_q)
    table = table.join(good.mean().rename("mean_ms")).join(good.max().rename("max_ms"))
    table = table.reindex(columns=columns[len(keys) :])
    return table.reset_index()


def _pcol(q: float) -> str:
    return f"p{round(q * 100):d}_ms" if round(q * 100) == q * 100 else f"p{q * 100:g}_ms"


def window_percentiles(
    run: Run, window_s: float | None = None, names: Iterable[str] | None = None
) -> pd.DataFrame:
    """Percentiles per time window (by start time) and name, with the users running then."""
    window_s = window_s or auto_window_s(run.duration_s)
    if is_table_run(run):
        table = _sql().window_table(run, window_s, names)
    else:
        samples = run.samples.assign(window=np.floor(run.samples["t_s"] / window_s).astype(int))
        table = percentile_table(samples, by=["window"], names=names)
    table.insert(1, "t_s", table["window"] * window_s)
    table.insert(2, "mid_s", table["t_s"] + window_s / 2)
    table.insert(3, "users", _users_at(run, table["t_s"], window_s))
    return table


def _users_at(run: Run, starts: pd.Series, window_s: float) -> np.ndarray:
    """Most users running at any time in each window ``[start, start + window_s)``."""
    timeline = run.timeline
    out = np.zeros(len(starts), dtype=int)
    if timeline.empty:
        return out
    t = timeline["t_s"].to_numpy()
    users = timeline["users"].to_numpy()
    for i, start in enumerate(starts.to_numpy()):
        inside = users[(t >= start) & (t < start + window_s)]
        out[i] = int(inside.max()) if len(inside) else 0
    return out


OPENING = ("connect", "auth")  # happen while a step ramps up: the whole step counts


def step_percentiles(run: Run, names: Iterable[str] | None = None) -> pd.DataFrame:
    """Percentiles per load step and name; ``users`` is the step's user count.

    Samples that ended during the step's hold count, plus connect and auth samples of its
    ramp (new users open their sessions then): turns of a ramp ran at neither load.
    """
    if is_table_run(run):
        return _sql().step_percentiles(run, names)
    samples = run.samples
    keep = samples["step"].notna() & (samples["in_hold"] | samples["name"].isin(OPENING))
    samples = samples.loc[keep]
    table = percentile_table(samples, by=["step"], names=names)
    users = run.steps.set_index("step")["users"]
    table.insert(1, "users", table["step"].map(users).astype(int))
    return table


def percentiles_by_users(
    run: Run, names: Iterable[str], min_count: int = 5, max_groups: int = 25
) -> pd.DataFrame:
    """Percentiles against the load: per step when the run has several steps, else per
    concurrency level (users running across nodes when each sample ended). A level with
    fewer than ``min_count`` samples and under 2 % of its name's samples is dropped as
    ramp noise; a name with few samples overall (connects) keeps all its levels."""
    names = list(names)
    if is_table_run(run):
        return _sql().percentiles_by_users(run, names, min_count, max_groups)
    if len(run.steps) >= 2:
        table = step_percentiles(run, names)
        table["basis"] = "step"
        return table
    samples = run.samples.loc[run.samples["name"].isin(names)]
    users = _total_users_at(run, samples)
    if len(np.unique(users)) > max_groups:
        width = int(np.ceil(users.max() / max_groups))
        users = np.ceil(users / width).astype(int) * width
    table = percentile_table(samples.assign(users=users), by=["users"])
    share = table["count"] / table.groupby("name")["count"].transform("sum")
    table = table.loc[(table["count"] >= min_count) | (share >= 0.02)].reset_index(drop=True)
    table["basis"] = "concurrency"
    return table


def failure_summary(run: Run) -> pd.DataFrame:
    """Per taxonomy id: failed samples, their share, the names they hit, first and last seen."""
    if is_table_run(run):
        return _sql().failure_summary(run)
    failed = run.samples.loc[~run.samples["ok"]]
    columns = ["failure", "count", "share", "names", "first_s", "last_s"]
    if failed.empty:
        return pd.DataFrame(columns=columns)
    failed = failed.assign(failure=failed["failure"].fillna("unknown"))
    grouped = failed.groupby("failure")
    table = pd.DataFrame(
        {
            "count": grouped.size(),
            "names": grouped["name"].agg(lambda s: ", ".join(sorted(s.unique()))),
            "first_s": grouped["t_s"].min(),
            "last_s": grouped["t_s"].max(),
        }
    )
    table["share"] = table["count"] / table["count"].sum()
    table = table.reset_index().sort_values("count", ascending=False, kind="stable")
    return table[columns].reset_index(drop=True)


def failures_over_time(run: Run, window_s: float | None = None) -> pd.DataFrame:
    """Failed samples per time window and taxonomy id (long form; only non-zero counts)."""
    window_s = window_s or auto_window_s(run.duration_s)
    if is_table_run(run):
        return _sql().failures_over_time(run, window_s)
    failed = run.samples.loc[~run.samples["ok"]]
    if failed.empty:
        return pd.DataFrame(columns=["window", "t_s", "failure", "count"])
    window = np.floor(failed["t_s"] / window_s).astype(int)
    counts = (
        failed.assign(window=window, failure=failed["failure"].fillna("unknown"))
        .groupby(["window", "failure"])
        .size()
        .rename("count")
        .reset_index()
    )
    counts.insert(1, "t_s", counts["window"] * window_s)
    return counts


def auth_failures_by_users(run: Run, name: str = "auth", max_groups: int = 25) -> pd.DataFrame:
    """Auth attempts, failures and failure rate by the concurrency they happened at.

    Concurrency is the total of users running across all generator nodes when the attempt
    ended. More than ``max_groups`` distinct counts (a slow ramp) are grouped into bins of
    equal width, labelled by their largest count.
    """
    if is_table_run(run):
        return _sql().auth_failures_by_users(run, name, max_groups)
    rows = run.samples.loc[run.samples["name"] == name]
    columns = ["users", "attempts", "failures", "failure_rate"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    users = _total_users_at(run, rows)
    if len(np.unique(users)) > max_groups:
        width = int(np.ceil(users.max() / max_groups))
        users = np.ceil(users / width).astype(int) * width
    frame = pd.DataFrame({"users": users, "ok": rows["ok"].to_numpy()})
    grouped = frame.assign(failed=~frame["ok"]).groupby("users")
    table = pd.DataFrame({"attempts": grouped.size(), "failures": grouped["failed"].sum()})
    table["failure_rate"] = table["failures"] / table["attempts"]
    return table.reset_index()[columns]


def _total_users_at(run: Run, rows: pd.DataFrame) -> np.ndarray:
    """Users running across all nodes when each row was recorded (the end of its
    measurement): the per-second timeline, and never less than the row's own process
    count, which is exact where the timeline has not caught up yet (its first second)."""
    own = rows["users"].fillna(0).to_numpy(dtype=int)
    timeline = run.timeline
    if timeline.empty:
        return own
    t_s = (rows["t_s"] + rows["latency_ms"].fillna(0) / 1000.0).to_numpy()
    index = np.searchsorted(timeline["t_s"].to_numpy(), t_s, side="right") - 1
    index = np.clip(index, 0, len(timeline) - 1)
    return np.maximum(timeline["users"].to_numpy()[index].astype(int), own)


def turn_waterfall(run: Run, stat: str = "mean") -> pd.DataFrame:
    """The average successful turn, stage by stage: when each event first arrives (ms after
    the message was sent) and how long it took since the stage before."""
    if is_table_run(run):
        return _sql_turns().turn_waterfall(run, stat)
    turns = run.turns.loc[run.turns["ok"]] if "ok" in run.turns else run.turns
    rows = []
    previous = 0.0
    for stage in run.stages:
        column = f"{stage}_ms"
        if column not in turns:
            continue
        values = turns[column].dropna()
        if values.empty:
            continue
        at = float(values.mean() if stat == "mean" else values.median())
        rows.append(
            {
                "stage": stage,
                "start_ms": previous,
                "end_ms": at,
                "duration_ms": at - previous,
                "turns": len(values),
            }
        )
        previous = max(previous, at)
    return pd.DataFrame(rows, columns=["stage", "start_ms", "end_ms", "duration_ms", "turns"])


def ok_turns_e2e(run: Run | TableRun) -> tuple[int, float]:
    """(successful turns, their mean e2e ms)."""
    if is_table_run(run):
        return _sql_turns().ok_turns_e2e(run)
    turns = run.turns.loc[run.turns["ok"]]
    return len(turns), float(turns["e2e_ms"].mean())


def name_percentiles(run: Run | TableRun, names: Iterable[str] | None = None) -> pd.DataFrame:
    """``percentile_table`` of every sample of ``run`` per stats name."""
    if is_table_run(run):
        return _sql().percentile_table(run, names=names)
    return percentile_table(run.samples, names=names)


def _sql():
    """The DuckDB twins of these functions, for a ``TableRun`` (imported on use)."""
    from . import sql_stats

    return sql_stats


def _sql_turns():
    from . import sql_turns

    return sql_turns


def health_warnings(
    run: Run,
    window_s: float | None = None,
    cpu_limit: float = 90.0,
    lag_limit_ms: float = 50.0,
) -> pd.DataFrame:
    """Windows in which a generator process was saturated (CPU or event-loop lag over limit),
    so their latencies are read as the generator's, not the server's."""
    columns = ["node", "metric", "t_s", "end_s", "peak", "limit", "unit"]
    health = run.health
    if health.empty:
        return pd.DataFrame(columns=columns)
    window_s = window_s or auto_window_s(run.duration_s)
    limits = {"cpu": cpu_limit, "lag": lag_limit_ms}
    frame = health.loc[health["metric"].isin(list(limits))]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame.assign(window=np.floor(frame["t_s"] / window_s).astype(int))
    peaks = frame.groupby(["node", "metric", "window"])["value"].max().reset_index()
    peaks["limit"] = peaks["metric"].map(limits)
    over = peaks.loc[peaks["value"] > peaks["limit"]].sort_values(["node", "metric", "window"])
    if over.empty:
        return pd.DataFrame(columns=columns)
    # consecutive saturated windows of one node and metric make one warning
    gap = over.groupby(["node", "metric"])["window"].diff().ne(1)
    spans = over.assign(span=gap.cumsum()).groupby(["node", "metric", "span"])
    table = pd.DataFrame(
        {
            "t_s": spans["window"].min() * window_s,
            "end_s": (spans["window"].max() + 1) * window_s,
            "peak": spans["value"].max(),
            "limit": spans["limit"].first(),
        }
    ).reset_index()
    table["unit"] = table["metric"].map({"cpu": "%", "lag": "ms"})
    return table[columns].sort_values("t_s", kind="stable").reset_index(drop=True)


#: a stage's p95 growing by at least this factor from one tested user count to the next is
#: flagged, whether or not the SLO still holds: a generous SLO must not hide saturation
GROWTH_FACTOR = 2.0
#: ... and by at least this many ms, so a fast stage's jitter (1 ms -> 2.5 ms) is not flagged
GROWTH_MIN_MS = 5.0
#: stages watched for growth, and their p95 column in the step table
GROWTH_STAGES = {
    "turn:e2e": "e2e_p95_ms",
    "turn:ttfe": "ttfe_p95_ms",
    "connect": "connect_p95_ms",
    "auth": "auth_p95_ms",
}


def fmt_ms(value: float) -> str:
    """A latency in ms with about three significant digits; n/a when unknown."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


@dataclass(frozen=True)
class Growth:
    """A stage's p95 that grew steeply between two consecutive tested user counts."""

    stage: str
    users_from: int
    users_to: int
    p95_from_ms: float
    p95_to_ms: float
    met_from: bool  # the lower user count met the SLO
    met_to: bool

    @property
    def factor(self) -> float:
        return self.p95_to_ms / self.p95_from_ms

    def sentence(self) -> str:
        text = (
            f"{self.stage} p95 grew {self.factor:.1f}x from {self.users_from} to "
            f"{self.users_to} users ({fmt_ms(self.p95_from_ms)} ms -> "
            f"{fmt_ms(self.p95_to_ms)} ms)"
        )
        if self.met_from and self.met_to:
            return text + " while within the SLO: the service is near saturation."
        if self.met_from:
            return text + f", where the SLO broke at {self.users_to} users."
        return text + f", past the SLO already broken at {self.users_from} users."


def latency_growth(steps: pd.DataFrame, factor: float = GROWTH_FACTOR) -> list[Growth]:
    """Steep p95 growth between consecutive user counts of a step table (``step_table``).

    Steps of one user count (a search may revisit one) count as their worst p95 and pass
    only if all passed. Flagged when the p95 grew by ``factor`` or more and by at least
    ``GROWTH_MIN_MS``, in the order of the user counts, then of ``GROWTH_STAGES``.
    """
    columns = [c for c in GROWTH_STAGES.values() if c in steps.columns]
    if steps.empty or not columns:
        return []
    agg: dict[str, str] = dict.fromkeys(columns, "max")
    if "meets_slo" in steps.columns:
        agg["meets_slo"] = "all"
    by_users = steps.groupby("users", sort=True).agg(agg)
    met = by_users["meets_slo"] if "meets_slo" in by_users else pd.Series(True, by_users.index)
    found: list[Growth] = []
    users = by_users.index.tolist()
    for low, high in itertools.pairwise(users):
        for stage, column in GROWTH_STAGES.items():
            if column not in by_users:
                continue
            before, after = float(by_users.at[low, column]), float(by_users.at[high, column])
            if not (math.isfinite(before) and math.isfinite(after)) or before <= 0:
                continue
            if after >= factor * before and after - before >= GROWTH_MIN_MS:
                found.append(
                    Growth(
                        stage,
                        int(low),
                        int(high),
                        before,
                        after,
                        bool(met.at[low]),
                        bool(met.at[high]),
                    )
                )
    return found
