"""The CI performance gate: thresholds over a run's raw samples, verdict and exit code.

Pure logic: no Locust, no sockets, no clock of its own (times come in with the samples).
``thresholds`` (the threshold grammar), ``config`` (command line, TOML file, defaults),
``names`` (stats names a profile can produce), ``abort`` (abort on fail during a run),
``evaluate`` (exact evaluation over a run folder), ``outputs`` (table, JSON, JUnit, Markdown,
and ``gate_run_folder``, the whole gate), ``cli`` (``wsload gate``).

Importing this package loads only the pure parts a load-generating process needs (the
configuration and the abort watch); evaluation and outputs, which need pandas, load on
first use of their names.

Exit codes: 0 every threshold holds, 1 one does not (or one the user asked for measured
nothing and is not optional), 2 a configuration error (``ConfigError``).
"""

from __future__ import annotations

import importlib
from typing import Any

from wsload.gate.abort import AbortReason, AbortWatch
from wsload.gate.config import (
    DEFAULT_GOODPUT_MS,
    RUN_CHECKS,
    SECURITY_DEFAULTS,
    GateConfig,
    build_config,
    load_threshold_file,
    run_checks,
    security_defaults,
)
from wsload.gate.threshold_model import Metric, Threshold, ThresholdError
from wsload.gate.thresholds import parse_duration, parse_threshold

_LAZY = {
    "wsload.gate.evaluate": (
        "EXIT_FAILED", "EXIT_PASSED", "FAIL", "NOT_MEASURED", "PASS", "GateResult", "GateRow",
        "evaluate", "evaluate_run",
    ),
    "wsload.gate.outputs": (
        "JSON_FILE", "JUNIT_FILE", "MARKDOWN_FILE", "append_step_summary", "gate_run_folder",
        "junit_xml", "markdown", "render_table", "to_json", "write_outputs",
    ),
}  # fmt: skip
_HOME = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "DEFAULT_GOODPUT_MS",
    "RUN_CHECKS",
    "SECURITY_DEFAULTS",
    "AbortReason",
    "AbortWatch",
    "GateConfig",
    "Metric",
    "Threshold",
    "ThresholdError",
    "build_config",
    "load_threshold_file",
    "parse_duration",
    "parse_threshold",
    "run_checks",
    "security_defaults",
    *_HOME,
]


def __getattr__(name: str) -> Any:
    """The evaluation and output names, imported when first asked for (they need pandas)."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'wsload.gate' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
