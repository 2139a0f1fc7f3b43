"""The CI performance gate: thresholds over a run's raw samples, verdict and exit code.

One import for the Locust glue and the ``wsload gate`` command. Pure logic: no Locust, no
sockets, no clock of its own (times come in with the samples). The parts live in their own
modules: ``gate_grammar`` (threshold grammar), ``gate_config`` (command line, TOML file,
defaults), ``gate_eval`` (exact evaluation), ``gate_abort`` (abort on fail during a run),
``gate_report`` (outputs), ``gate_cli`` (``wsload gate``).

Exit codes: 0 every threshold holds, 1 one does not (or one the user asked for measured
nothing and is not optional),
2 a configuration error (``ConfigError``, e.g. a threshold that does not parse).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from wsload.errors import EXIT_CONFIG_ERROR, ConfigError
from wsload.gate_abort import AbortReason, AbortWatch
from wsload.gate_config import (
    DEFAULT_GOODPUT_MS,
    RUN_CHECKS,
    SECURITY_DEFAULTS,
    GateConfig,
    build_config,
    load_threshold_file,
    run_checks,
    security_defaults,
)
from wsload.gate_eval import (
    EXIT_FAILED,
    EXIT_PASSED,
    FAIL,
    NOT_MEASURED,
    PASS,
    GateResult,
    GateRow,
    evaluate,
    evaluate_run,
)
from wsload.gate_grammar import Metric, Threshold, ThresholdError, parse_duration, parse_threshold
from wsload.gate_report import (
    JSON_FILE,
    JUNIT_FILE,
    MARKDOWN_FILE,
    append_step_summary,
    junit_xml,
    markdown,
    render_table,
    to_json,
    write_outputs,
)

__all__ = [
    "DEFAULT_GOODPUT_MS",
    "EXIT_CONFIG_ERROR",
    "EXIT_FAILED",
    "EXIT_PASSED",
    "FAIL",
    "JSON_FILE",
    "JUNIT_FILE",
    "MARKDOWN_FILE",
    "NOT_MEASURED",
    "PASS",
    "RUN_CHECKS",
    "SECURITY_DEFAULTS",
    "AbortReason",
    "AbortWatch",
    "ConfigError",
    "GateConfig",
    "GateResult",
    "GateRow",
    "Metric",
    "Threshold",
    "ThresholdError",
    "append_step_summary",
    "build_config",
    "evaluate",
    "evaluate_run",
    "gate_run_folder",
    "junit_xml",
    "load_threshold_file",
    "markdown",
    "parse_duration",
    "parse_threshold",
    "render_table",
    "run_checks",
    "security_defaults",
    "to_json",
    "write_outputs",
]


def gate_run_folder(
    folder: str | Path,
    config: GateConfig,
    *,
    aborted: str | None = None,
    json_path: str | Path | None = None,
    junit_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> GateResult:
    """Evaluate a run folder, print the table, write every output; the whole gate.

    ``wsload gate`` and the live gate at the end of a Locust run both call this, so the
    two give the same verdict and files for the same folder. ``aborted`` is the reason a
    live run stopped early (``AbortReason.message``), shown in every output. The exit
    status to use is ``result.exit_code``.
    """
    stream = stream or sys.stdout
    result = evaluate_run(folder, config)
    if aborted:
        result = dataclasses.replace(result, aborted=aborted)
    print(render_table(result), file=stream, flush=True)
    written = write_outputs(
        result,
        folder,
        json_path=json_path,
        junit_path=junit_path,
        markdown_path=markdown_path,
        environ=environ,
    )
    print("gate outputs: " + ", ".join(str(p) for p in written), file=stream, flush=True)
    return result
