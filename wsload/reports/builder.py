"""Assemble the report of a run folder: figures, tables, capacity statement, comparison.

Everything numeric comes from ``wsload.analysis``; this module only decides what to show,
in which order, and writes ``index.html``, ``report.md`` and the PNG figures side by side.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from wsload.analysis import (
    SLO,
    Capacity,
    Run,
    auto_window_s,
    capacity,
    compare_runs,
    failure_summary,
    health_warnings,
    name_order,
    turn_waterfall,
)
from wsload.analysis.connections import capacity_rows, is_connection_run
from wsload.analysis.stats import name_percentiles
from wsload.analysis.table_run import TableRun, is_table_run, open_run
from wsload.errors import ConfigError
from wsload.run.stream_summary import NOT_MS

from . import figures
from .connections import FIGURE as CONNECTIONS_FIGURE
from .connections import connections_section
from .document import Document, Table
from .stream_section import stream_section

FIGURES = (
    "latency_over_time.png",
    "latency_vs_users.png",
    "throughput_vs_users.png",
    "failures_over_time.png",
    "auth_failures_vs_users.png",
    "turn_waterfall.png",
    "comparison.png",
    "generator_health.png",
    CONNECTIONS_FIGURE,
)

REPORTS_DIR = Path("reports")  # where reports go unless --output says otherwise


@dataclass
class ReportFiles:
    folder: Path
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    capacity: Capacity | None = None
    comparison: pd.DataFrame | None = None


def build_report(
    run_dir: str | Path,
    *,
    output: str | Path | None = None,
    baseline: str | Path | None = None,
    target_users: int | None = None,
    slo: SLO | None = None,
    slo_overrides: Mapping[str, float | None] | None = None,
    window_s: float | None = None,
    headroom: float = 0.0,
    memory_limit: str | None = None,
) -> ReportFiles:
    """Write the report of ``run_dir`` (default into ``reports/<run-id>/`` under the working
    folder); ConfigError on bad input, before anything is written. The SLO is ``slo``, else
    the run's own (its ``--slo-*`` options) with ``slo_overrides`` applied, else the
    defaults. A run of results tables is read with DuckDB where it lies (``memory_limit``:
    DuckDB's, e.g. ``"1GB"``), so only aggregated tables are ever in memory."""
    run = open_run(run_dir, memory_limit=memory_limit)
    base_run = None
    if baseline is not None:
        try:
            base_run = open_run(baseline, memory_limit=memory_limit)
        except ConfigError as error:
            raise ConfigError(f"--baseline: {error.message}", fix=error.fix) from None
    try:
        return write_report(
            run, base_run, output, target_users, slo, slo_overrides, window_s, headroom
        )
    finally:
        for opened in (run, base_run):
            if isinstance(opened, TableRun):
                opened.close()


def write_report(
    run: Run | TableRun,
    base_run: Run | TableRun | None,
    output: str | Path | None,
    target_users: int | None,
    slo: SLO | None,
    slo_overrides: Mapping[str, float | None] | None,
    window_s: float | None,
    headroom: float,
) -> ReportFiles:
    """``build_report`` of a run already opened (``open_run`` or ``load_run``)."""
    folder = Path(output) if output is not None else REPORTS_DIR / run.path.name
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output {folder} is a file", fix="give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the report folder {folder}: {exc.strerror or exc}",
            fix="give --output a folder you can write to",
        ) from None
    for name in FIGURES:  # a figure of an earlier report must not outlive its section
        (folder / name).unlink(missing_ok=True)

    slo = slo or SLO.from_options(run.options, **(slo_overrides or {}))
    window_s = window_s or auto_window_s(run.duration_s)
    cap = capacity(run, slo, target_users=target_users, headroom=headroom)
    doc = Document(f"wsload report: {run.run_id}")
    written: list[Path] = []

    def figure(name: str, fig: Any, alt: str) -> None:
        written.append(figures.save(fig, folder / name))
        doc.img(name, alt)

    _overview(doc, run, cap)
    if is_connection_run(run):  # a run that held sessions: what it held
        connections_section(doc, capacity_rows(run), figure)
    _health(doc, run, window_s, figure)
    doc.h2("Latency over time")
    doc.p(
        f"Exact percentiles of successful samples per {window_s:g} s window, by when each "
        "measurement started; the user count below."
    )
    figure(
        "latency_over_time.png",
        figures.latency_over_time(run, window_s),
        "Latency percentiles over time with the user count",
    )
    doc.h2("Latency against users")
    figure(
        "latency_vs_users.png",
        figures.latency_vs_users(run, cap),
        "connect, auth, TTFE and e2e percentiles against users",
    )
    _capacity(doc, cap, figure)
    _failures(doc, run, figure, window_s)
    _turn(doc, run, figure)
    stream_section(doc, run)
    comparison = None
    if base_run is not None:
        comparison = _comparison(doc, base_run, run, cap, slo, figure)
    _details(doc, run)

    markdown = folder / "report.md"
    markdown.write_text(doc.markdown(), encoding="utf-8")
    page = folder / "index.html"
    page.write_text(doc.html(), encoding="utf-8")
    return ReportFiles(folder, page, markdown, written, cap, comparison)


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ms(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) < 10:
        return f"{value:.2f}"
    if abs(value) < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def _pct(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value * 100:.2f} %" if 0 < value < 0.01 else f"{value * 100:.1f} %"


def _overview(doc: Document, run: Run, cap: Capacity) -> None:
    notice = run.crash_notice
    if notice:  # first thing on the page: every number below stops where the crash did
        doc.warn(notice)
    meta = run.meta
    profile = meta.get("profile") if isinstance(meta.get("profile"), dict) else {}
    host = meta.get("host") or "unknown host"
    embedded = " (embedded reference target)" if meta.get("embedded_target") else ""
    nodes = len(run.nodes)
    doc.p(
        f"Host `{host}`{embedded}; started {_when(run.started)}, ran {run.duration_s:.1f} s "
        f"with up to {run.max_users} users on {nodes} generator process"
        + ("es" if nodes != 1 else "")
        + (f"; profile `{profile.get('name')}`" if profile.get("name") else "")
        + "."
    )
    counts = overview_counts(run)
    turns, ok_turns = counts["turns"], counts["ok_turns"]
    share = _pct(ok_turns / turns) if turns else "n/a"
    doc.ul(
        [
            f"{turns} turns, {ok_turns} succeeded ({share})",
            f"{counts['sessions']} sessions, {counts['ok_sessions']} opened and authenticated",
            f"{counts['samples']} samples, {counts['failed']} failed",
            "capacity: " + cap.headline,
        ]
    )
    table = name_percentiles(run)
    table = table.sort_values("name", key=lambda s: s.map(lambda n: name_order(n, run.stages)))
    doc.table(
        Table(
            ["name", "count", "failures", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            [
                [
                    f"{r.name} ({NOT_MS[r.name]}, not ms)" if r.name in NOT_MS else str(r.name),
                    str(r.count),
                    str(r.failures),
                    _ms(r.p50_ms),
                    _ms(r.p95_ms),
                    _ms(r.p99_ms),
                    _ms(r.max_ms),
                ]
                for r in table.itertuples(index=False)
            ],
            marked=[bool(r.failures) for r in table.itertuples(index=False)],
            numeric=[False, True, True, True, True, True, True],
        )
    )


def overview_counts(run: Run | TableRun) -> dict[str, int]:
    """Turns, sessions and samples, and how many of each succeeded (or failed)."""
    if is_table_run(run):
        from wsload.analysis.sql_stats import overview

        return overview(run)
    turns, sessions = run.turns, run.sessions
    return {
        "turns": len(turns),
        "ok_turns": int(turns["ok"].sum()) if len(turns) else 0,
        "sessions": len(sessions),
        "ok_sessions": int(sessions["ok"].sum()) if len(sessions) else 0,
        "samples": len(run.samples),
        "failed": int((~run.samples["ok"]).sum()),
    }


def _health(doc: Document, run: Run, window_s: float, figure: Any) -> None:
    doc.h2("Generator health")
    if run.health.empty:
        doc.p(
            "This run recorded no generator-health samples (CPU, event-loop lag), so a "
            "saturated load generator cannot be told apart from a slow server here."
        )
        return
    warnings = health_warnings(run, window_s)
    if warnings.empty:
        doc.p("Every generator process stayed under 90 % CPU and 50 ms event-loop lag.")
    for row in warnings.itertuples(index=False):
        doc.warn(
            f"generator `{row.node}` {_METRIC[row.metric]} peaked at {row.peak:.0f} {row.unit} "
            f"(limit {row.limit:g}) between {row.t_s:.0f} s and {row.end_s:.0f} s: latencies "
            "in that window are the generator's as much as the server's."
        )
    figure("generator_health.png", figures.generator_health(run), "Generator CPU and lag")


_METRIC = {"cpu": "CPU", "lag": "event-loop lag"}


def _capacity(doc: Document, cap: Capacity, figure: Any) -> None:
    doc.h2("Capacity")
    headline, lines = cap.headline, cap.statement(with_warnings=False)
    doc.ul([f"**{line}**" if line == headline else line for line in lines])
    for warning in cap.warnings():
        doc.warn(warning)
    figure(
        "throughput_vs_users.png",
        figures.throughput_vs_users(cap),
        "Throughput and goodput against users with the USL fit",
    )
    steps = cap.steps
    if len(steps):
        doc.table(
            Table(
                [
                    "step",
                    "users",
                    "hold s",
                    "turns/s",
                    "goodput/s",
                    "connect p95",
                    "auth p95",
                    "TTFE p95",
                    "e2e p95",
                    "failure rate",
                    "SLO",
                ],
                [
                    [
                        str(r.step),
                        str(r.users),
                        f"{r.hold_s:.0f}",
                        f"{r.throughput_tps:.2f}",
                        f"{r.goodput_tps:.2f}",
                        _ms(r.connect_p95_ms),
                        _ms(r.auth_p95_ms),
                        _ms(r.ttfe_p95_ms),
                        _ms(r.e2e_p95_ms),
                        _pct(r.failure_rate),
                        ("met" if r.meets_slo else f"broken: {r.breaches}")
                        + ("; generator saturated" if r.generator_saturated else ""),
                    ]
                    for r in steps.itertuples(index=False)
                ],
                marked=[not r.meets_slo for r in steps.itertuples(index=False)],
                numeric=[True] * 10 + [False],
            )
        )
        doc.p(
            "Latencies in ms. Each step counts what ended during its hold (after the ramp), "
            "plus the connects and auths of its ramp; throughput counts every turn that ended "
            "during the hold, goodput those that succeeded within the e2e limit."
        )
    if cap.instances is not None:  # no projection, nothing it could assume
        doc.p("Assumptions behind the projection:")
        doc.ul(cap.assumptions)


def _failures(doc: Document, run: Run, figure: Any, window_s: float) -> None:
    doc.h2("Failures")
    summary = failure_summary(run)
    if summary.empty:
        doc.p("No sample failed.")
    else:
        doc.table(
            Table(
                ["failure id", "count", "share", "stats names", "first at s", "last at s"],
                [
                    [
                        f"`{r.failure}`",
                        str(r.count),
                        _pct(r.share),
                        r.names,
                        f"{r.first_s:.1f}",
                        f"{r.last_s:.1f}",
                    ]
                    for r in summary.itertuples(index=False)
                ],
                numeric=[False, True, True, False, True, True],
            )
        )
    figure(
        "failures_over_time.png",
        figures.failures_timeline(run, window_s),
        "Failures over time by taxonomy id",
    )
    doc.h2("Auth failures against concurrency")
    figure(
        "auth_failures_vs_users.png",
        figures.auth_failures_vs_users(run),
        "Auth failure rate against the number of users running",
    )


def _turn(doc: Document, run: Run, figure: Any) -> None:
    doc.h2("An average turn")
    table = turn_waterfall(run)
    if table.empty:
        doc.p("No turn succeeded, so there is no average turn to show.")
    else:
        doc.p(
            "Mean time from the chat message to the first arrival of each event over "
            "successful turns; each bar starts where the previous event arrived."
        )
    figure("turn_waterfall.png", figures.turn_waterfall_chart(run), "Waterfall of a turn")


def _comparison(
    doc: Document, base: Run, run: Run, cap: Capacity, slo: SLO, figure: Any
) -> pd.DataFrame:
    doc.h2(f"Comparison with the baseline {base.run_id}")
    if base.crash_notice:
        doc.warn(f"the baseline: {base.crash_notice}")
    table = compare_runs(base, run)
    regressions = table.loc[table["regression"], "name"].tolist()
    doc.p(
        "A percentile regresses when this run is more than 10 % and 2 ms slower than the "
        "baseline; a failure rate when it grew by more than 0.5 percentage points."
    )
    if regressions:
        doc.warn(f"{len(regressions)} regression(s): " + ", ".join(f"`{n}`" for n in regressions))
    else:
        doc.p("**No regression.**")
    base_cap = capacity(base, slo)
    if len(base_cap.steps) and len(cap.steps):
        doc.p(
            f"Largest load meeting the SLO: baseline {base_cap.limit_text()}, "
            f"this run {cap.limit_text()}."
        )

    def cell(row: Any, metric: str) -> str:
        a, b = getattr(row, f"{metric}_base"), getattr(row, f"{metric}_new")
        pct = getattr(row, f"{metric}_delta_pct")
        change = "" if pd.isna(pct) else f" ({pct:+.0f} %)"
        return f"{_ms(a)} → {_ms(b)}{change}"

    doc.table(
        Table(
            ["name", "status", "p50 ms", "p95 ms", "p99 ms", "failure rate", "worse"],
            [
                [
                    str(r.name),
                    f"⚠ {r.status}" if r.regression else str(r.status),
                    cell(r, "p50_ms"),
                    cell(r, "p95_ms"),
                    cell(r, "p99_ms"),
                    f"{_pct(r.failure_rate_base)} → {_pct(r.failure_rate_new)}",
                    str(r.regressed),
                ]
                for r in table.itertuples(index=False)
            ],
            marked=table["regression"].tolist(),
            numeric=[False, False, True, True, True, True, False],
        )
    )
    figure(
        "comparison.png",
        figures.comparison_chart(table, base.run_id, run.run_id),
        "p95 per stats name against the baseline",
    )
    return table


def _details(doc: Document, run: Run) -> None:
    doc.h2("Run details")
    options = run.options
    keys = (
        "think_time",
        "messages_per_session",
        "ws_profile",
        "ws_carrier",
        "target_args",
        "step_start",
        "step_size",
        "step_hold",
        "step_max",
        "step_search",
    )
    items = [f"`{k}`: {options[k]}" for k in keys if options.get(k) not in (None, "", [])]
    versions = run.meta.get("versions")
    if isinstance(versions, dict):
        items.append(
            "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "platform")
        )
    items.append(f"run folder: `{run.path}`; steps from {_steps_source(run)}")
    doc.ul(items)


def _steps_source(run: Run) -> str:
    if run.steps.empty:
        return "nowhere (no steady load found)"
    source = str(run.steps["source"].iloc[0])
    return "the capacity run's steps.csv" if source == "steps.csv" else "the user counts"
