"""Gate outputs: console table, ``gate.json``, JUnit XML, Markdown, the GitHub step summary.

Each output says the same thing for a different reader: the console for whoever watches the
job, JUnit for the CI's test tab (one test case per threshold, so a broken threshold shows
up by name), Markdown for the job summary or a merge-request note, JSON for scripts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from wsload.errors import ConfigError
from wsload.gate.config import GateConfig
from wsload.gate.evaluate import (
    FAIL,
    NOT_MEASURED,
    PASS,
    GateResult,
    GateRow,
    evaluate_run,
    format_number,
)
from wsload.gate.threshold_model import format_decimal

JSON_FILE = "gate.json"
JUNIT_FILE = "gate-junit.xml"
MARKDOWN_FILE = "gate.md"
SCHEMA_VERSION = 2  # 2: verdict "not measured" (was "no data"), check, crashed
_SUITE = "wsload gate"


def _verdict_word(row: GateRow) -> str:
    if row.verdict == NOT_MEASURED:
        if row.failed:
            return "NOT MEASURED"
        return "not measured (optional)" if row.threshold.optional else "not measured"
    return "FAIL" if row.verdict == FAIL else "pass"


def _headline(result: GateResult) -> str:
    n = len(result.rows)
    unmeasured = len(result.unmeasured_rows)
    also = f", {unmeasured} not measured" if unmeasured else ""
    if result.passed:
        return f"gate: PASSED ({n} threshold{'s' if n != 1 else ''}{also})"
    return f"gate: FAILED ({len(result.failed_rows)} of {n} thresholds{also})"


def _window_text(result: GateResult) -> str:
    duration = result.duration_s
    parts = [f"{result.samples} samples"]
    if duration is not None:
        parts.append(f"{duration:.1f} s window")
    if result.warmup_s:
        parts.append(f"first {format_number(result.warmup_s)} s ignored as warm-up")
    return ", ".join(parts)


def render_table(result: GateResult) -> str:
    """The console table: threshold, observed, verdict, and what the value is made of."""
    header = ("threshold", "observed", "verdict", "detail")
    cells = [(row.title, row.observed_text, _verdict_word(row), row.detail) for row in result.rows]
    widths = [max([len(header[i]), *(len(c[i]) for c in cells)]) for i in range(3)]
    line = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    lines = [f"wsload gate ({_window_text(result)})", line.format(*header).rstrip()]
    lines.append("-" * (sum(widths) + 6 + len(header[3])))
    lines += [line.format(*c).rstrip() for c in cells]
    for row in result.failed_rows:
        if row.threshold.description:
            lines.append(f"{row.title}: {row.threshold.description}")
    if result.aborted:
        lines.append(f"run aborted: {result.aborted}")
    if result.crashed:
        lines.append(result.crashed)
    lines.append(_headline(result))
    return "\n".join(lines)


def to_json(result: GateResult) -> dict[str, Any]:
    """``gate.json``: every row with its limit and observation in the threshold's unit."""
    return {
        "version": SCHEMA_VERSION,
        "passed": result.passed,
        "exit_code": result.exit_code,
        "aborted": result.aborted,
        "crashed": result.crashed,
        "warmup_s": result.warmup_s,
        "window": {
            "start": result.window_start,
            "end": result.window_end,
            "duration_s": result.duration_s,
        },
        "samples": result.samples,
        "goodput_limits_ms": dict(result.goodput_limits_ms),
        "thresholds": [
            {
                "threshold": str(row.threshold),
                "check": row.title,
                "metric": str(row.threshold.metric),
                "op": row.threshold.op,
                "limit": float(row.threshold.value),
                "unit": row.threshold.unit,
                "observed": row.observed,
                "observed_text": row.observed_text,
                "verdict": row.verdict,
                "failed": row.failed,
                "abort": row.threshold.abort,
                "optional": row.threshold.optional,
                "detail": row.detail,
                "description": row.threshold.description,
                "origin": row.threshold.origin,
            }
            for row in result.rows
        ],
    }


def junit_xml(result: GateResult) -> str:
    """JUnit XML: one test case per threshold, failures carry the observed value."""
    failures = sum(1 for row in result.rows if row.failed)
    skipped = sum(1 for row in result.rows if row.verdict == NOT_MEASURED and not row.failed)
    counts = {
        "tests": str(len(result.rows)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
        "time": f"{result.duration_s or 0.0:.3f}",
    }
    root = ET.Element("testsuites", {"name": _SUITE, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": _SUITE, **counts})
    for row in result.rows:
        threshold = row.threshold
        case = ET.SubElement(
            suite, "testcase", {"classname": "wsload.gate", "name": row.title, "time": "0"}
        )
        wanted = f"{threshold.op} {format_decimal(threshold.value)}{threshold.unit}"
        seen = "not measured" if row.observed is None else f"observed {row.observed_text}"
        summary = f"{seen}, needs {wanted}"
        if row.detail:
            summary += f" ({row.detail})"
        if row.failed:
            kind = "not-measured" if row.verdict == NOT_MEASURED else "threshold"
            failure = ET.SubElement(case, "failure", {"message": summary, "type": kind})
            failure.text = _case_text(row, summary)
        elif row.verdict == NOT_MEASURED:
            why = "optional" if threshold.optional else "added by wsload"
            ET.SubElement(case, "skipped", {"message": f"{why}, {summary}"})
        else:
            ET.SubElement(case, "system-out").text = summary
    trouble = [f"run aborted: {result.aborted}"] if result.aborted else []
    trouble += [result.crashed] if result.crashed else []
    if trouble:
        ET.SubElement(suite, "system-err").text = "\n".join(trouble)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _case_text(row: GateRow, summary: str) -> str:
    lines = [f"{row.threshold}: {summary}"]
    if row.threshold.description:
        lines.append(row.threshold.description)
    lines.append(f"from {row.threshold.origin}")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: GateResult, *, title: str = "wsload gate") -> str:
    """A Markdown section with the verdict and the threshold table."""
    mark = "✅ passed" if result.passed else "❌ failed"
    icons = {PASS: "✅ pass", FAIL: "❌ fail"}
    lines = [f"### {title}: {mark}", "", f"{_window_text(result)}.", ""]
    if result.aborted:
        lines += [f"**Run aborted:** {_md_cell(result.aborted)}", ""]
    if result.crashed:
        lines += [f"**{_md_cell(result.crashed)}**", ""]
    lines += ["| Check | Observed | Verdict | Detail |", "|---|---:|---|---|"]
    for row in result.rows:
        verdict = icons.get(row.verdict) or ("❌ not measured" if row.failed else "⚪ not measured")
        label = f"{row.threshold.label}: " if row.threshold.label else ""
        detail = row.detail
        why = row.threshold.description
        if row.failed and why:
            detail = f"{why} ({detail})" if detail else why
        lines.append(
            f"| {_md_cell(label)}`{_md_cell(str(row.threshold))}` | {_md_cell(row.observed_text)} "
            f"| {verdict} | {_md_cell(detail)} |"
        )
    return "\n".join(lines) + "\n"


def append_step_summary(text: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append to ``$GITHUB_STEP_SUMMARY`` when it is set (GitHub Actions); the path or None."""
    env = os.environ if environ is None else environ
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    return path


def write_outputs(
    result: GateResult,
    folder: str | Path | None = None,
    *,
    json_path: str | Path | None = None,
    junit_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write gate.json, gate-junit.xml and gate.md (into ``folder`` unless a path is given).

    Also appends the Markdown to ``$GITHUB_STEP_SUMMARY`` when set. Returns the paths
    written; a path that cannot be written is a ``ConfigError``.
    """
    base = Path(folder) if folder is not None else Path(".")
    md = markdown(result)
    planned = [
        (Path(json_path) if json_path else base / JSON_FILE, _dump_json(result)),
        (Path(junit_path) if junit_path else base / JUNIT_FILE, junit_xml(result)),
        (Path(markdown_path) if markdown_path else base / MARKDOWN_FILE, md),
    ]
    written = []
    for path, text in planned:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot write the gate output {path}: {exc.strerror or exc}",
                fix="give a path in a folder you can write to",
            ) from None
        written.append(path)
    try:
        summary = append_step_summary(md, environ)
    except OSError as exc:
        raise ConfigError(
            f"cannot append to $GITHUB_STEP_SUMMARY: {exc.strerror or exc}",
            fix="unset GITHUB_STEP_SUMMARY outside GitHub Actions",
        ) from None
    if summary is not None:
        written.append(summary)
    return written


def _dump_json(result: GateResult) -> str:
    return json.dumps(to_json(result), indent=2) + "\n"


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
    return publish_gate(
        evaluate_run(folder, config),
        folder,
        aborted=aborted,
        json_path=json_path,
        junit_path=junit_path,
        markdown_path=markdown_path,
        environ=environ,
        stream=stream,
    )


def publish_gate(
    result: GateResult,
    folder: str | Path,
    *,
    aborted: str | None = None,
    json_path: str | Path | None = None,
    junit_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> GateResult:
    """Print the verdict of an evaluated run and write its files (what ``gate_run_folder``
    does after the evaluation, for a caller that evaluated elsewhere)."""
    stream = stream or sys.stdout
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
