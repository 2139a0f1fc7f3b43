"""Gate outputs: console table, gate.json, JUnit XML, Markdown and the GitHub step summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import pandas as pd
import pytest

from wsload.errors import ConfigError
from wsload.gate.config import GateConfig
from wsload.gate.evaluate import evaluate
from wsload.gate.outputs import (
    append_step_summary,
    junit_xml,
    markdown,
    render_table,
    to_json,
    write_outputs,
)
from wsload.gate.thresholds import parse_threshold

T0 = 1_800_000_000.0


@pytest.fixture
def result():
    frame = pd.DataFrame(
        {
            "ts": [T0, T0 + 1, T0 + 2, T0 + 3],
            "name": ["connect", "turn:ttfe", "turn:ttfe", "turn:e2e"],
            "ms": [3.0, 250.0, 310.0, 900.0],
            "ok": [True, True, True, True],
            "failure": pd.array([None] * 4, dtype="string"),
        }
    )
    texts = ["turn:ttfe p95 < 200ms", "turn:e2e p95 < 5s", "probe:x p95 < 1s optional"]
    config = GateConfig(thresholds=tuple(parse_threshold(t) for t in texts))
    return evaluate(frame, config, stopped=T0 + 4)


def test_the_console_table_names_each_threshold_its_value_and_verdict(result):
    table = render_table(result)
    lines = table.splitlines()
    assert lines[1].split() == ["threshold", "observed", "verdict", "detail"]
    failing = next(line for line in lines if line.startswith("turn:ttfe p95 < 200ms"))
    assert "307 ms" in failing
    assert "FAIL" in failing
    assert "not measured (optional)" in table
    assert "security: auth enforced: probe.auth_not_enforced == 0 abort" in table
    # 3 given + 3 security defaults + 2 run checks; the probes and auth never ran here
    assert lines[-1] == "gate: FAILED (1 of 10 thresholds, 4 not measured)"


def test_gate_json_holds_every_row_with_its_observation(result):
    data = json.loads(json.dumps(to_json(result)))
    assert data["passed"] is False
    assert data["exit_code"] == 1
    rows = {row["threshold"]: row for row in data["thresholds"]}
    assert rows["turn:ttfe p95 < 200ms"]["observed"] == pytest.approx(307.0)
    assert rows["turn:ttfe p95 < 200ms"]["verdict"] == "fail"
    assert rows["turn:e2e p95 < 5s"]["observed"] == pytest.approx(0.9)
    assert rows["probe:x p95 < 1s optional"]["verdict"] == "not measured"
    assert rows["probe:x p95 < 1s optional"]["failed"] is False
    assert rows["probe.auth_not_enforced == 0 abort"]["origin"] == "security default"
    assert rows["foreign_event.count == 0 abort"]["check"] == (
        "security: isolation: foreign_event.count == 0 abort"
    )
    assert data["crashed"] is None
    assert data["window"]["duration_s"] == 4.0


def test_junit_has_one_testcase_per_threshold_and_failures_carry_the_observed_value(result):
    root = ET.fromstring(junit_xml(result))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("10", "1", "4")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == [row.title for row in result.rows]
    assert "security: isolation: foreign_event.count == 0 abort" in cases
    failure = cases["turn:ttfe p95 < 200ms"].find("failure")
    assert failure is not None
    assert failure.get("message").startswith("observed 307 ms, needs < 200ms")
    assert cases["probe:x p95 < 1s optional"].find("skipped") is not None
    assert cases["turn:e2e p95 < 5s"].find("failure") is None


def test_junit_records_an_aborted_run(result):
    root = ET.fromstring(junit_xml(replace(result, aborted="refused.count == 0 broke")))
    assert "refused.count == 0 broke" in root.find("testsuite/system-err").text


def test_markdown_is_a_table_with_a_verdict_per_threshold(result):
    text = markdown(result)
    assert text.startswith("### wsload gate: ❌ failed")
    assert "| `turn:ttfe p95 < 200ms` | 307 ms | ❌ fail |" in text
    assert "| `turn:e2e p95 < 5s` | 0.9 s | ✅ pass |" in text
    assert (
        "| security: auth enforced: `probe.auth_not_enforced == 0 abort` | - | ⚪ not measured |"
        in text
    )
    assert text.count("\n| ") == 1 + 10  # the header and a row per check


def test_the_step_summary_is_appended_only_when_github_sets_it(tmp_path, result):
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    assert append_step_summary("x", {}) is None
    assert append_step_summary(markdown(result), {"GITHUB_STEP_SUMMARY": str(summary)}) == summary
    written = write_outputs(result, tmp_path, environ={"GITHUB_STEP_SUMMARY": str(summary)})
    content = summary.read_text()
    assert content.startswith("# earlier step\n### wsload gate")
    assert content.count("### wsload gate") == 2
    assert written[-1] == summary


def test_outputs_go_into_the_run_folder_unless_paths_are_given(tmp_path, result):
    written = write_outputs(result, tmp_path, junit_path=tmp_path / "ci" / "junit.xml", environ={})
    assert [p.name for p in written] == ["gate.json", "junit.xml", "gate.md"]
    assert json.loads((tmp_path / "gate.json").read_text())["passed"] is False
    ET.parse(tmp_path / "ci" / "junit.xml")


def test_an_unwritable_output_is_a_config_error(tmp_path, result):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write the gate output"):
        write_outputs(result, tmp_path, json_path=blocker / "gate.json", environ={})


def test_a_gate_without_thresholds_still_renders():
    empty = evaluate(pd.DataFrame(), GateConfig(security=False, run_checks=False))
    assert render_table(empty).splitlines()[-1] == "gate: PASSED (0 thresholds)"
    assert ET.fromstring(junit_xml(empty)).get("tests") == "0"


def test_a_failed_security_check_is_named_with_its_reason_in_every_output():
    frame = pd.DataFrame(
        {
            "ts": [T0, T0 + 1, T0 + 2],
            "name": ["auth", "turn:e2e", "session:isolation"],
            "ms": [3.0, 250.0, 0.0],
            "ok": [True, False, False],
            "failure": pd.array([None, "foreign_event", "foreign_event"], dtype="string"),
        }
    )
    result = evaluate(frame, GateConfig(), stopped=T0 + 3)
    name = "security: isolation: foreign_event.count == 0 abort"
    why = "a session received an event of another user, thread or run"
    assert f"{name}: {why}" in render_table(result)
    case = next(
        c for c in ET.fromstring(junit_xml(result)).iter("testcase") if c.get("name") == name
    )
    assert case.find("failure") is not None and why in case.find("failure").text
    assert f"| {why} (of 2 samples) |" in markdown(result)
    assert render_table(result).splitlines()[-1].startswith("gate: FAILED (1 of")


def test_a_run_that_did_not_stop_cleanly_is_flagged_in_every_output(result):
    notice = "This run did not stop cleanly (crashed or killed) at about X; its last second ..."
    crashed = replace(result, crashed=notice)
    assert notice in render_table(crashed)
    assert to_json(crashed)["crashed"] == notice
    assert notice in ET.fromstring(junit_xml(crashed)).find("testsuite/system-err").text
    assert f"**{notice}**" in markdown(crashed)
