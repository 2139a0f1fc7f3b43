"""The report's figures, one function per figure, each returning a matplotlib ``Figure``.

Built on ``matplotlib.figure.Figure`` (Agg canvas), never pyplot, so rendering needs no
display and leaves no global state; notebooks show the same figures. Every axis says what
it measures and in which unit; legends sit outside the plotting area so they never hide
data, and long labels go in legends rather than as text on the plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from wsload.analysis import (
    Capacity,
    Run,
    auth_failures_by_users,
    auto_window_s,
    failures_over_time,
    health_warnings,
    percentiles_by_users,
    turn_waterfall,
    window_percentiles,
)
from wsload.analysis.planning import KAPPA, LAMBDA, SIGMA
from wsload.analysis.stats import ok_turns_e2e

WIDE = (11.0, 5.6)
DPI = 110
COLORS = {
    "turn:e2e": "#1f77b4",
    "turn:ttfe": "#ff7f0e",
    "connect": "#2ca02c",
    "auth": "#9467bd",
}
PERCENTILE_STYLE = {
    "p50_ms": ("p50", "-", "o"),
    "p95_ms": ("p95", "--", "s"),
    "p99_ms": ("p99", ":", "^"),
}
WARN_COLOR = "#d62728"


def save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI)
    return path


def _figure(size: tuple[float, float] = WIDE) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global backend switched."""
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _time_axis(run: Run) -> tuple[float, str]:
    """Seconds per unit and the axis label: minutes for runs longer than 15 minutes."""
    if run.duration_s > 900:
        return 60.0, "time since the run started (min)"
    return 1.0, "time since the run started (s)"


def _legend_outside(ax: Axes, **kwargs: object) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, **kwargs)


def _note(ax: Axes, text: str) -> None:
    """A message in the middle of an empty plot (e.g. nothing failed)."""
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=11,
        color="#555555",
    )


def _shade_health(run: Run, axes: Sequence[Axes], unit_s: float) -> None:
    warnings = health_warnings(run)
    for i, row in enumerate(warnings.itertuples(index=False)):
        for ax in axes:
            ax.axvspan(
                row.t_s / unit_s,
                row.end_s / unit_s,
                color=WARN_COLOR,
                alpha=0.12,
                label="generator saturated" if (i == 0 and ax is axes[0]) else None,
            )


def latency_over_time(run: Run, window_s: float | None = None) -> Figure:
    """Percentiles per time window (log scale when stages differ a lot), users below."""
    names = ["turn:e2e", "turn:ttfe", "connect", "auth"]
    table = window_percentiles(run, window_s, names=names)
    unit_s, xlabel = _time_axis(run)
    figure = _figure((11.0, 6.4))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    plotted = []
    for name in names:
        rows = table.loc[table["name"] == name]
        if rows.empty:
            continue
        metrics = ("p50_ms", "p95_ms", "p99_ms") if name == "turn:e2e" else ("p95_ms",)
        for metric in metrics:
            if rows[metric].isna().all():
                continue
            label, style, marker = PERCENTILE_STYLE[metric]
            sparse = name in ("connect", "auth")  # only when sessions open: points, no line
            top.plot(
                rows["mid_s"] / unit_s,
                rows[metric],
                linestyle="none" if sparse else style,
                marker=marker if sparse else None,
                markersize=5,
                color=COLORS[name],
                label=f"{name} {label}",
            )
            plotted.append(rows[metric].dropna())
    values = pd.concat(plotted) if plotted else pd.Series(dtype=float)
    values = values[values > 0]
    if len(values) and values.max() / max(values.min(), 1e-3) > 30:
        top.set_yscale("log")
        top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        top.set_ylabel("latency (ms, log scale)")
    else:
        top.set_ylabel("latency (ms)")
        top.set_ylim(bottom=0)
    if values.empty:
        _note(top, "no successful samples")
    top.set_title(f"Latency percentiles per {table_window(run, window_s):g} s window")
    top.grid(True, which="major", alpha=0.3)
    timeline = run.timeline
    bottom.step(timeline["t_s"] / unit_s, timeline["users"], where="post", color="#444444")
    bottom.fill_between(
        timeline["t_s"] / unit_s, timeline["users"], step="post", color="#999999", alpha=0.3
    )
    bottom.set_ylabel("users")
    bottom.set_xlabel(xlabel)
    bottom.set_ylim(0, max(float(timeline["users"].max()) if len(timeline) else 1.0, 1.0) * 1.2)
    bottom.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    bottom.grid(True, alpha=0.3)
    _shade_health(run, [top, bottom], unit_s)
    _legend_outside(top)
    return figure


def table_window(run: Run, window_s: float | None) -> float:
    return window_s or auto_window_s(run.duration_s)


def latency_vs_users(run: Run, capacity: Capacity | None = None) -> Figure:
    """connect, auth, TTFE and e2e percentiles against the user count, one panel each."""
    names = ["connect", "auth", "turn:ttfe", "turn:e2e"]
    table = percentiles_by_users(run, names)
    basis = table["basis"].iloc[0] if len(table) else "step"
    limits = {}
    if capacity is not None:
        slo = capacity.slo
        limits = {"connect": slo.connect_p95_ms, "auth": slo.auth_p95_ms}
        limits["turn:e2e"] = slo.e2e_p95_ms
    figure = _figure((11.0, 7.6))
    axes = figure.subplots(2, 2, sharex=True).ravel()
    slo_drawn = False
    for ax, name in zip(axes, names, strict=True):
        rows = table.loc[table["name"] == name].sort_values("users")
        title = name
        if rows.empty:
            _note(ax, "no samples")
        for metric, (_label, style, marker) in PERCENTILE_STYLE.items():
            if rows.empty:
                break
            ax.plot(rows["users"], rows[metric], linestyle=style, marker=marker, color=COLORS[name])
        limit = limits.get(name)
        values = rows[["p50_ms", "p95_ms", "p99_ms"]].to_numpy(dtype=float)
        if limit is not None and np.isfinite(values).any():
            top = float(np.nanmax(values))
            if limit <= 1.5 * top:
                ax.axhline(limit, color=WARN_COLOR, linestyle="-.")
                slo_drawn = True
            else:
                title += f"  (SLO p95 limit {limit:g} ms is off the chart)"
        ax.set_title(title, fontsize=11)
        ax.set_ylabel("latency (ms)")
        ax.set_ylim(0, _headroom(ax, 1.12))
        ax.grid(True, alpha=0.3)
    users = sorted(table["users"].unique()) if len(table) else []
    for ax in axes[2:]:
        ax.set_xlabel("users" + (" (load step)" if basis == "step" else " running at the time"))
        if 0 < len(users) <= 12:
            ax.set_xticks(users)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [
        Line2D([], [], color="#333333", linestyle=style, marker=marker, label=label)
        for label, style, marker in PERCENTILE_STYLE.values()
    ]
    if slo_drawn:
        handles.append(Line2D([], [], color=WARN_COLOR, linestyle="-.", label="SLO p95 limit"))
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    figure.suptitle("Latency percentiles against users (successful samples)", fontsize=12)
    return figure


def throughput_vs_users(capacity: Capacity) -> Figure:
    """Throughput and goodput per step with the USL fit, the knee and the SLO limit."""
    steps = capacity.steps
    fit = capacity.fit
    figure = _figure()
    ax = figure.subplots()
    if steps.empty:
        _note(ax, "no load steps in this run")
    else:
        ax.plot(steps["users"], steps["throughput_tps"], "o", color="#1f77b4", label="throughput")
        ax.plot(
            steps["users"],
            steps["goodput_tps"],
            "s",
            markerfacecolor="none",
            color="#2ca02c",
            markersize=9,
            clip_on=False,  # a goodput of 0 sits on the axis, whole
            label="goodput (turns within the SLO)",
        )
    x_max = float(steps["users"].max()) if len(steps) else 10.0
    if fit is not None:
        reach = x_max * 1.25
        if math.isfinite(fit.peak_users) and fit.peak_users < 2 * x_max:
            reach = max(reach, fit.peak_users * 1.1)
        grid = np.linspace(0, reach, 200)
        label = (
            f"USL fit: {LAMBDA}={_short(fit.lam)}, {SIGMA}={_short(fit.sigma)}, "
            f"{KAPPA}={_short(fit.kappa)}\nR²={fit.r2:.3f} over {fit.points} steps"
        )
        ax.plot(grid, fit.predict(grid), "-", color="#ff7f0e", label=label)
        linear = fit.lam * grid
        ceiling = fit.ceiling
        shown = linear <= (ceiling * 1.3 if math.isfinite(ceiling) else np.inf)
        ax.plot(grid[shown], linear[shown], ":", color="#7f7f7f", label="linear scaling (λN)")
        ax.axvspan(
            x_max,
            reach,
            color="#7f7f7f",
            alpha=0.08,
            label="fit extrapolated beyond the largest step",
        )
        knee = fit.knee_users
        if math.isfinite(knee) and knee <= reach:
            label = f"knee ≈ {knee:.0f}" + (" (extrapolated)" if knee > x_max else "")
            ax.axvline(knee, color="#ff7f0e", linestyle="--", alpha=0.8, label=label)
    if capacity.max_users is not None:
        label = f"largest load meeting the SLO: {capacity.max_users}"
        if capacity.lower_bound:
            label = f"at least {capacity.max_users}: SLO met\nat the largest step (no limit found)"
        ax.axvline(capacity.max_users, color="#2ca02c", linestyle="-.", label=label)
    if capacity.first_breach_users is not None:
        ax.axvline(
            capacity.first_breach_users,
            color=WARN_COLOR,
            linestyle="-.",
            label=f"first SLO breach: {capacity.first_breach_users}",
        )
    ax.set_xlabel("users (load step)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_ylabel("turns per second")
    ax.set_xlim(0, max(ax.get_xlim()[1], x_max * 1.1))
    ax.set_ylim(0, _headroom(ax, 1.1))
    ax.grid(True, alpha=0.3)
    title = "Throughput and goodput against users"
    if fit is None:
        title += " (USL fit needs 3 or more user counts)"
    ax.set_title(title)
    _legend_outside(ax)
    return figure


def _headroom(ax: Axes, factor: float) -> float:
    """A y top above every plotted point and line, so markers are never cut at the frame."""
    tops = []
    for line in ax.get_lines():
        values = np.asarray(line.get_ydata(), dtype=float)
        if np.isfinite(values).any():
            tops.append(float(np.nanmax(values)))
    return max(tops) * factor if tops and max(tops) > 0 else 1.0


def _short(value: float) -> str:
    return "0" if abs(value) < 1e-9 else f"{value:.3g}"


def failures_timeline(run: Run, window_s: float | None = None) -> Figure:
    """Failed samples per window, stacked by taxonomy id."""
    window_s = table_window(run, window_s)
    counts = failures_over_time(run, window_s)
    unit_s, xlabel = _time_axis(run)
    figure = _figure()
    ax = figure.subplots()
    if counts.empty:
        _note(ax, "no failures recorded in this run")
        ax.set_xlim(0, max(run.duration_s, 1.0) / unit_s)
        ax.set_ylim(0, 1)
    else:
        wide = counts.pivot_table(
            index="t_s", columns="failure", values="count", aggfunc="sum", fill_value=0
        )
        wide = wide[wide.sum().sort_values(ascending=False).index]
        bottom = np.zeros(len(wide))
        colors = _palette(len(wide.columns))
        for color, failure in zip(colors, wide.columns, strict=True):
            ax.bar(
                (wide.index + window_s / 2) / unit_s,
                wide[failure],
                width=window_s / unit_s * 0.9,
                bottom=bottom,
                color=color,
                label=failure,
            )
            bottom += wide[failure].to_numpy()
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, max(run.duration_s, float(wide.index.max()) + window_s) / unit_s)
        _legend_outside(ax, title="failure id")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"failed samples per {window_s:g} s")
    ax.set_title("Failures over time by taxonomy id")
    ax.grid(True, axis="y", alpha=0.3)
    return figure


def _palette(count: int) -> list[tuple[float, ...]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def auth_failures_vs_users(run: Run) -> Figure:
    """Auth failure rate against the concurrency it happened at, attempts below."""
    table = auth_failures_by_users(run)
    figure = _figure((11.0, 6.0))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    if table.empty:
        _note(top, "no auth attempts in this run")
    else:
        top.plot(
            table["users"], table["failure_rate"] * 100, "o-", color=COLORS["auth"], label="auth"
        )
        width = max(float(np.min(np.diff(table["users"]))) * 0.6, 0.4) if len(table) > 1 else 0.6
        bottom.bar(table["users"], table["attempts"], width=width, color="#999999")
        if table["failures"].sum() == 0:
            _note(top, "no auth attempt failed")
    top.set_ylabel("auth failure rate (%)")
    top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    top.set_ylim(
        bottom=0, top=max(5.0, float(table["failure_rate"].max() * 110) if len(table) else 5)
    )
    top.set_title("Auth failures against concurrency")
    top.grid(True, alpha=0.3)
    bottom.set_ylabel("attempts")
    bottom.set_xlabel("users running when the attempt ended")
    if 0 < len(table) <= 12:
        bottom.set_xticks(table["users"].to_numpy())
    else:
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    bottom.grid(True, axis="y", alpha=0.3)
    return figure


def turn_waterfall_chart(run: Run) -> Figure:
    """The average successful turn as a waterfall: when each event arrives, and the step."""
    table = turn_waterfall(run)
    ok_turns, e2e = ok_turns_e2e(run)
    figure = _figure((11.0, 1.6 + 0.55 * (len(table) + 1)))
    ax = figure.subplots()
    if table.empty:
        _note(ax, "no successful turn in this run")
        ax.set_yticks([])
    else:
        labels = list(table["stage"])
        y = np.arange(len(table))
        colors = _palette(len(table))
        ax.barh(y, table["duration_ms"], left=table["start_ms"], color=colors, height=0.6)
        ax.barh(len(table), e2e, left=0, color="#444444", height=0.6)
        labels.append("whole turn (e2e)")
        span = max(e2e, float(table["end_ms"].max()))
        for yi, row in zip(y, table.itertuples(index=False), strict=True):
            ax.text(
                row.end_ms + span * 0.01,
                yi,
                f"+{row.duration_ms:.1f} ms  (at {row.end_ms:.1f} ms)",
                va="center",
                fontsize=9,
            )
        ax.text(e2e + span * 0.01, len(table), f"{e2e:.1f} ms", va="center", fontsize=9)
        ax.set_yticks(np.arange(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, span * 1.3)
        ax.set_title(f"An average turn: mean first arrival of each event ({ok_turns} turns)")
    ax.set_xlabel("time since the chat message was sent (ms)")
    ax.grid(True, axis="x", alpha=0.3)
    return figure


def comparison_chart(table: pd.DataFrame, baseline_id: str, run_id: str) -> Figure:
    """p95 per stats name, baseline beside this run; regressions in red."""
    rows = table.dropna(subset=["p95_ms_base", "p95_ms_new"]).iloc[::-1]
    figure = _figure((11.0, 1.6 + 0.45 * max(len(rows), 1)))
    ax = figure.subplots()
    if rows.empty:
        _note(ax, "no stats name in both runs")
    else:
        y = np.arange(len(rows))
        ax.barh(y + 0.2, rows["p95_ms_base"], height=0.4, color="#aaaaaa")
        colors = [WARN_COLOR if r else "#1f77b4" for r in rows["regression"]]
        ax.barh(y - 0.2, rows["p95_ms_new"], height=0.4, color=colors)
        handles = [
            Patch(color="#aaaaaa", label=f"baseline {baseline_id}"),
            Patch(color="#1f77b4", label=f"this run {run_id}"),
        ]
        if rows["regression"].any():
            handles.append(Patch(color=WARN_COLOR, label="this run, regression"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
        labels = [
            f"{name}\n(worse: {_worse(what)})" if regression else name
            for name, regression, what in zip(
                rows["name"], rows["regression"], rows["regressed"], strict=True
            )
        ]
        ax.set_yticks(y, labels, fontsize=9)
        values = pd.concat([rows["p95_ms_base"], rows["p95_ms_new"]])
        values = values[values > 0]
        if len(values) and values.max() / values.min() > 30:
            ax.set_xscale("log")
            ax.set_xlabel("p95 latency (ms, log scale)")
        else:
            ax.set_xlabel("p95 latency (ms)")
    ax.set_title("p95 per stats name: baseline against this run")
    ax.grid(True, axis="x", alpha=0.3)
    return figure


def _worse(regressed: str) -> str:
    return regressed.replace("_ms", "").replace("failure_rate", "failure rate")


def generator_health(run: Run, cpu_limit: float = 90.0, lag_limit_ms: float = 50.0) -> Figure:
    """CPU and event-loop lag of each generator process, with the saturation limits."""
    unit_s, xlabel = _time_axis(run)
    figure = _figure((11.0, 6.0))
    top, bottom = figure.subplots(2, 1, sharex=True)
    for ax, metric, limit, ylabel in (
        (top, "cpu", cpu_limit, "CPU (%)"),
        (bottom, "lag", lag_limit_ms, "event-loop lag (ms)"),
    ):
        rows = run.health.loc[run.health["metric"] == metric]
        for node, group in rows.groupby("node"):
            ax.plot(group["t_s"] / unit_s, group["value"], label=str(node))
        ax.axhline(limit, color=WARN_COLOR, linestyle="--", label=f"limit {limit:g}")
        if rows.empty:
            _note(ax, f"no {metric} samples")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, max(_headroom(ax, 1.1), 105.0 if metric == "cpu" else 0.0))
        ax.grid(True, alpha=0.3)
        _legend_outside(ax, title="generator")
    bottom.set_xlabel(xlabel)
    top.set_title("Generator health")
    return figure
