"""The report's section on a connection-capacity run: latency and memory against open
sessions, the largest count held cleanly, ramp time and failures by taxonomy id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from wsload.analysis.connections import (
    ConnectionCapacity,
    attempts_vs_open,
    connection_capacity,
    is_connection_run,
    memory_timeline,
)
from wsload.analysis.run import Run
from wsload.reports.document import Document, Table
from wsload.reports.figures import _figure

FIGURE = "connections.png"
BINS = 20


def connections_section(
    doc: Document, run: Run, figure: Callable[[str, Any, str], None]
) -> ConnectionCapacity | None:
    """The section, when ``run`` held sessions; the capacity it states (None otherwise)."""
    if not is_connection_run(run):
        return None
    cap = connection_capacity(run)
    doc.h2("Connection capacity")
    clean = f"{cap.held_cleanly:,}"
    if cap.first_failure_s is None:
        doc.p(f"Largest count held cleanly: **{clean} sessions** (no connect, auth, ping or "
              "disconnect failure in the run).")  # fmt: skip
    else:
        doc.p(f"Largest count held cleanly: **{clean} sessions** (the first failure came at "
              f"{cap.first_failure_s:.0f} s; at most {cap.peak_sessions:,} were open at "
              "once).")  # fmt: skip
    rows = [["peak sessions open", f"{cap.peak_sessions:,}"]]
    if cap.ramp_s is not None:
        rows.append(["ramp time to the peak", f"{cap.ramp_s:.1f} s"])
        rows.append(["ramp rate", f"{cap.ramp_per_s:,.0f} sessions/s"])
    for label, value in (
        ("generator memory per session (slope)", cap.generator_kb_per_session),
        ("generator memory at the peak, all processes", cap.generator_peak_kb),
        ("target memory per session (slope)", cap.target_kb_per_session),
        ("target memory at the peak, all processes", cap.target_peak_kb),
    ):
        if value is not None:
            unit = "KB" if "slope" in label else "MB"
            shown = value if unit == "KB" else value / 1024.0
            rows.append([label, f"{shown:,.1f} {unit}"])
    for failure, count in sorted(cap.failures.items(), key=lambda item: -item[1]):
        rows.append([f"failures: {failure}", f"{count:,}"])
    doc.table(Table(["measure", "value"], rows, numeric=[False, True]))
    figure(FIGURE, connections_figure(run, cap), "connect and auth latency and memory "
           "against open sessions")  # fmt: skip
    return cap


def connections_figure(run: Run, cap: ConnectionCapacity) -> Any:
    """Top: connect and auth p50/p95 against the sessions open when each attempt started.
    Bottom: generator and target memory against the sessions they held."""
    fig = _figure((9.0, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    attempts = attempts_vs_open(run)
    ok = attempts.loc[attempts["ok"].astype(bool)]
    peak = max(1, cap.peak_sessions)
    edges = np.linspace(0, peak, BINS + 1)
    for name, color in (("connect", "#1f77b4"), ("auth", "#ff7f0e")):
        rows = ok.loc[ok["name"] == name]
        if rows.empty:
            continue
        bins = np.clip(np.digitize(rows["open"], edges) - 1, 0, BINS - 1)
        grouped = rows.groupby(bins)["latency_ms"]
        centers = (edges[:-1] + edges[1:]) / 2
        p50 = grouped.quantile(0.5)
        p95 = grouped.quantile(0.95)
        top.plot(centers[p50.index], p50.to_numpy(), "-o", color=color, ms=3, label=f"{name} p50")
        top.plot(centers[p95.index], p95.to_numpy(), "--", color=color, label=f"{name} p95")
    top.set_ylabel("latency (ms)")
    top.set_title("Connect and auth latency against open sessions")
    top.legend(loc="upper left", fontsize=8)
    memory = memory_timeline(run)
    for sessions, kb, label, color in (
        ("sessions", "memory_kb", "generator (all processes)", "#2ca02c"),
        ("target_sessions", "target_memory_kb", "reference target (all processes)", "#d62728"),
    ):
        rows = memory[[sessions, kb]].dropna() if len(memory) else memory
        if len(rows):
            bottom.plot(rows[sessions], rows[kb] / 1024.0, ".", ms=3, color=color, label=label)
    bottom.set_xlabel("open sessions")
    bottom.set_ylabel("memory (MB, PSS)")
    if bottom.lines:
        bottom.legend(loc="upper left", fontsize=8)
    if cap.held_cleanly:
        for ax in (top, bottom):
            ax.axvline(cap.held_cleanly, color="#7f7f7f", lw=0.8, ls=":")
    return fig
