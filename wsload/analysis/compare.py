"""Comparing two runs name by name: percentile and failure-rate deltas, regressions flagged.

A percentile regresses when the new run is slower by more than ``threshold`` (relative)
and by more than ``floor_ms`` (absolute), so sub-millisecond jitter on fast stages is not
flagged; a failure rate regresses when it grows by more than ``failure_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .run import Run
from .stats import name_percentiles

METRICS = ("p50_ms", "p95_ms", "p99_ms")
_FIRST = ("connect", "auth", "turn:ttfe")


def name_order(name: str, stages: Sequence[str] = ()) -> tuple[int, int, str]:
    """Sort key of stats names: session opening first, then the turn's events in the order
    they arrive (``stages``, e.g. ``Run.stages``), gaps and spans, e2e, the rest."""
    if name in _FIRST:
        return (_FIRST.index(name), 0, name)
    stage = name.removeprefix("turn:")
    if name.startswith("turn:") and stage in stages:
        return (10, list(stages).index(stage), name)
    if name == "turn:e2e":
        return (60, 0, name)
    return (50 if name.startswith("turn:") else 70, 0, name)


def compare_runs(
    baseline: Run,
    candidate: Run,
    *,
    threshold: float = 0.10,
    floor_ms: float = 2.0,
    failure_threshold: float = 0.005,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Per stats name: both runs' p50/p95/p99 and failure rates, deltas, ``regression``.

    ``regressed`` lists what got worse (e.g. ``"p95_ms, failure_rate"``); ``status`` is
    ``regression``, ``improved``, ``same``, ``new`` (only in the candidate) or ``missing``.
    """
    base = name_percentiles(baseline, names).set_index("name")
    new = name_percentiles(candidate, names).set_index("name")
    keep = ["count", "failure_rate", *METRICS]
    table = base[keep].add_suffix("_base").join(new[keep].add_suffix("_new"), how="outer")
    regressed: list[str] = []
    statuses: list[str] = []
    for _name, row in table.iterrows():
        if pd.isna(row["count_base"]):
            regressed.append("")
            statuses.append("new")
            continue
        if pd.isna(row["count_new"]):
            regressed.append("")
            statuses.append("missing")
            continue
        worse, better = [], []
        for metric in METRICS:
            a, b = row[f"{metric}_base"], row[f"{metric}_new"]
            if pd.isna(a) or pd.isna(b):
                continue
            if b > a * (1 + threshold) and b - a > floor_ms:
                worse.append(metric)
            elif b < a * (1 - threshold) and a - b > floor_ms:
                better.append(metric)
        delta_rate = row["failure_rate_new"] - row["failure_rate_base"]
        if delta_rate > failure_threshold:
            worse.append("failure_rate")
        elif delta_rate < -failure_threshold:
            better.append("failure_rate")
        regressed.append(", ".join(worse))
        statuses.append("regression" if worse else "improved" if better else "same")
    for metric in METRICS:
        table[f"{metric}_delta"] = table[f"{metric}_new"] - table[f"{metric}_base"]
        table[f"{metric}_delta_pct"] = table[f"{metric}_delta"] / table[f"{metric}_base"] * 100
    table["failure_rate_delta"] = table["failure_rate_new"] - table["failure_rate_base"]
    table["regressed"] = regressed
    table["status"] = statuses
    table["regression"] = table["status"] == "regression"
    stages = candidate.stages or baseline.stages
    order = table.index.map(lambda name: name_order(name, stages))
    table = table.reset_index().iloc[sorted(range(len(order)), key=order.__getitem__)]
    table = table.reset_index(drop=True)
    for column in ("count_base", "count_new"):
        table[column] = table[column].astype("Int64")
    return table
