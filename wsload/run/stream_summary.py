"""Streamed answers in a run, as LLM benchmarks report them: TTFT, ITL, TPOT, output tokens
and output tokens per second, from the raw samples.

``turn:itl`` pools every gap of every stream (each gap one observation, as vLLM's bench
does), so its tail shows stalls; ``turn:tpot`` is one value per stream (AIPerf's and
llmperf's per-request inter-token latency), so each stream weighs the same. Shared by the
terminal summary and the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

STREAM_ROWS = (  # stats name, statistic label, unit
    ("turn:ttft", "TTFT", "ms"),
    ("turn:itl", "ITL, every gap", "ms"),
    ("turn:tpot", "TPOT, per stream", "ms"),
    ("turn:output_tokens", "output tokens", ""),
    ("turn:tokens_per_s", "output tokens/s, per stream", "/s"),
)

# Stream names whose values are not milliseconds, and what they are.
NOT_MS = {"turn:output_tokens": "tokens", "turn:tokens_per_s": "tokens/s"}


@dataclass(frozen=True)
class StreamFigures:
    """One stream metric over a run: observations and exact percentiles."""

    name: str
    label: str
    unit: str
    count: int
    p50: float
    p90: float
    p99: float
    mean: float


def stream_figures(samples: pd.DataFrame, column: str = "ms") -> list[StreamFigures]:
    """The stream metrics a run measured (empty when no turn was streamed); ``column`` holds
    the values (``latency_ms`` in ``wsload.analysis`` tables)."""
    out = []
    for name, label, unit in STREAM_ROWS:
        values = samples.loc[(samples["name"] == name) & samples["ok"], column].astype(float)
        if values.empty:
            continue
        out.append(
            StreamFigures(
                name,
                label,
                unit,
                len(values),
                float(values.quantile(0.5)),
                float(values.quantile(0.9)),
                float(values.quantile(0.99)),
                float(values.mean()),
            )
        )
    return out


def stream_lines(samples: pd.DataFrame) -> list[str]:
    """The summary's streamed-answers block, or nothing when no turn was streamed."""
    figures = stream_figures(samples)
    if not figures:
        return []
    streams = next((f.count for f in figures if f.name == "turn:ttft"), 0)
    lines = [
        f"streamed answers: {streams} turns with token events "
        "(ITL: every gap pooled; TPOT: one value per stream)"
    ]
    for f in figures:
        unit = f" {f.unit}" if f.unit == "ms" else f.unit
        lines.append(
            f"  {f.label:<30} p50 {f.p50:.1f}{unit}  p90 {f.p90:.1f}{unit}  "
            f"p99 {f.p99:.1f}{unit}  mean {f.mean:.1f}{unit}  (n={f.count})"
        )
    return lines
