"""The headline of a headless run: the console summary and Locust's ``--html`` report lead
with turns, turns/s and the share of failed turns, true to the run folder's samples."""

from __future__ import annotations

import re

import pytest
from wsload_runs import locust

from wsload.run.summary import load_samples, turn_headline

FAULTS = "--skip-events 0.2"
pytestmark = pytest.mark.slow


def test_console_summary_leads_with_turns_per_second_and_failed_share(tmp_path):
    folder = tmp_path / "run"
    done = locust(
        "ws_auth.py",
        *("-u", "4", "-r", "4", "-t", "5s", "--think-time", "0.2"),
        *("--results", str(folder), "--target-args", FAULTS),
    )
    out = done.stdout + done.stderr
    want = turn_headline(load_samples(folder))
    assert want["turns"] > 20 and want["failed_turns"] > 0, want
    line = re.search(r"turns: (\d+) completed, ([\d.]+) turns/s over ([\d.]+) s", out)
    assert line, out[-3000:]
    assert int(line.group(1)) == want["turns"]
    assert float(line.group(2)) == pytest.approx(want["turns_per_s"], abs=0.051)
    share = f"{want['failed_share'] * 100:.1f}%"
    assert f"failed turns: {want['failed_turns']} ({share} of turns): sequence_missing x" in out
    examples = out.split("failure examples (first 3 of each id):", 1)[1]
    assert "sequence_missing" in examples and "turn:e2e user " in examples
    assert out.index("turns: ") < out.index("failures by taxonomy id")


def test_html_report_of_a_headless_run_has_the_headline(tmp_path):
    folder, report = tmp_path / "run", tmp_path / "report.html"
    done = locust(
        "ws_auth.py",
        *("-u", "4", "-r", "4", "-t", "4s", "--think-time", "0.2"),
        *("--results", str(folder), "--html", str(report), "--target-args", FAULTS),
    )
    assert report.is_file(), done.stderr[-3000:]
    page = report.read_text()
    want = turn_headline(load_samples(folder))
    assert 'id="wsload-headline"' in page and "turns/s over the run" in page
    shown = re.search(r'data-figure="turns"><b>([\d,]+)</b>', page)
    assert shown and int(shown.group(1).replace(",", "")) == want["turns"]  # every last turn
