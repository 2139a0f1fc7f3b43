"""The report's "Streamed answers" section: TTFT, ITL, TPOT, output tokens and tokens/s."""

from __future__ import annotations

from wsload.analysis import Run, sql_stats
from wsload.analysis.table_run import is_table_run
from wsload.run.stream_summary import stream_figures

from .document import Document, Table


def stream_section(doc: Document, run: Run) -> None:
    """Nothing when no turn was streamed (the profile's ``[stream]`` events never came)."""
    if is_table_run(run):
        figures = sql_stats.stream_figures(run)
    else:
        figures = stream_figures(run.samples, "latency_ms")
    if not figures:
        return
    doc.h2("Streamed answers")
    doc.p(
        "Token events of the answers (the profile's `[stream]` events), measured as LLM "
        "benchmarks do: TTFT from the chat message to the first token event; ITL every gap "
        "between consecutive token events, pooled over all streams (a stall anywhere shows "
        "in its tail); TPOT one value per stream, (last token event - first) / (output "
        "tokens - 1); output tokens/s per stream, from the chat message to its last token."
    )
    doc.table(
        Table(
            ["metric", "name", "count", "p50", "p90", "p99", "mean"],
            [
                [
                    f.label + (f" ({f.unit})" if f.unit else ""),
                    f.name,
                    str(f.count),
                    *(f"{v:.1f}" for v in (f.p50, f.p90, f.p99, f.mean)),
                ]
                for f in figures
            ],
            numeric=[False, False, True, True, True, True, True],
        )
    )
