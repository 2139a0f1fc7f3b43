"""Analysis of wsload run folders: tidy tables, percentiles, comparisons and capacity.

    from wsload.analysis import load_run, capacity
    run = load_run("results/<run-id>")
    run.turns.e2e_ms.describe()
    print("\\n".join(capacity(run, target_users=1000).statement()))

``open_run`` opens a run of any size out of core instead (a ``TableRun``, queried with
DuckDB); ``capacity``, ``step_table`` and the statistics of ``stats`` take either.

The notebooks in ``analysis/`` and ``wsload report`` are thin layers over these functions.
Names are imported on first use, so the Locust process that only needs the SLO rules
(``wsload.analysis.slo``) does not pay for pandas and scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Capacity": "planning",
    "UslFit": "planning",
    "capacity": "planning",
    "fit_usl": "planning",
    "step_table": "planning",
    "usl": "planning",
    "compare_runs": "compare",
    "name_order": "compare",
    "Run": "run",
    "load_run": "run",
    "TableRun": "table_run",
    "open_run": "table_run",
    "SLO": "slo",
    "SLO_OPTIONS": "slo",
    "STEPS_FILE": "steps",
    "GROWTH_FACTOR": "stats",
    "Growth": "stats",
    "latency_growth": "stats",
    "auth_failures_by_users": "stats",
    "auto_window_s": "stats",
    "failure_summary": "stats",
    "failures_over_time": "stats",
    "health_warnings": "stats",
    "percentile_table": "stats",
    "percentiles_by_users": "stats",
    "step_percentiles": "stats",
    "turn_waterfall": "stats",
    "window_percentiles": "stats",
}
__all__ = [
    "GROWTH_FACTOR",
    "SLO",
    "SLO_OPTIONS",
    "STEPS_FILE",
    "Capacity",
    "Growth",
    "Run",
    "TableRun",
    "UslFit",
    "auth_failures_by_users",
    "auto_window_s",
    "capacity",
    "compare_runs",
    "failure_summary",
    "failures_over_time",
    "fit_usl",
    "health_warnings",
    "latency_growth",
    "load_run",
    "name_order",
    "open_run",
    "percentile_table",
    "percentiles_by_users",
    "step_percentiles",
    "step_table",
    "turn_waterfall",
    "usl",
    "window_percentiles",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'wsload.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


if TYPE_CHECKING:
    from .compare import compare_runs, name_order
    from .planning import Capacity, UslFit, capacity, fit_usl, step_table, usl
    from .run import Run, load_run
    from .slo import SLO, SLO_OPTIONS
    from .stats import (
        GROWTH_FACTOR,
        Growth,
        auth_failures_by_users,
        auto_window_s,
        failure_summary,
        failures_over_time,
        health_warnings,
        latency_growth,
        percentile_table,
        percentiles_by_users,
        step_percentiles,
        turn_waterfall,
        window_percentiles,
    )
    from .steps import STEPS_FILE
    from .table_run import TableRun, open_run
