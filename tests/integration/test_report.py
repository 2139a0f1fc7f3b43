"""``wsload report``: HTML, Markdown and figures from real runs (a chat run, a stepped
capacity run), a baseline comparison, and one clear message for bad input."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from wsload_runs import REPO, locust, real_run, samples_csv, write_run

from wsload import analysis as wa
from wsload.cli import main
from wsload.reports import build_report
from wsload.run.tables import is_run_folder

PNG = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.slow
ALWAYS = (
    "latency_over_time.png",
    "latency_vs_users.png",
    "throughput_vs_users.png",
    "failures_over_time.png",
    "auth_failures_vs_users.png",
    "turn_waterfall.png",
)


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return real_run(tmp_path_factory.getbasetemp(), "chat")


@pytest.fixture(scope="module")
def steps_dir(tmp_path_factory):
    return real_run(tmp_path_factory.getbasetemp(), "steps")


def _assert_figures(folder, names):
    for name in names:
        path = folder / name
        assert path.is_file(), name
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000, name


def test_report_of_a_real_run_writes_html_markdown_and_every_figure(chat_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(chat_dir), "--output", str(out), "--target-users", "100"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "index.html") in printed
    _assert_figures(out, ALWAYS)
    markdown = (out / "report.md").read_text()
    page = (out / "index.html").read_text()
    for name in ALWAYS:
        assert f"]({name})" in markdown and f'src="{name}"' in page
    for heading in ("Latency over time", "Capacity", "Failures", "An average turn"):
        assert f"## {heading}" in markdown and f"<h2>{heading}</h2>" in page
    assert "| turn:e2e |" in markdown
    # one constant load that met the SLO: a bound, so no instance count is projected
    assert "one instance carries at least 6 users" in markdown
    assert "No instance projection for 100 users" in markdown
    assert "For 100 users:" not in markdown and "For 100 users:" not in page
    assert "Assumptions behind the projection" not in markdown
    assert "did not stop cleanly" not in markdown  # a clean stop
    assert "Generator health" in markdown
    assert not (out / "comparison.png").exists()


def test_report_defaults_into_reports_under_the_working_folder(chat_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "20261130-demo"
    shutil.copytree(chat_dir, run_dir)
    monkeypatch.chdir(tmp_path)
    files = build_report(run_dir)
    assert files.folder == Path("reports") / "20261130-demo"
    assert (tmp_path / "reports" / "20261130-demo" / "index.html").is_file()
    assert files.html.stat().st_size > 1000 and files.markdown.stat().st_size > 500
    assert len(files.figures) >= len(ALWAYS)


def test_report_of_a_stepped_capacity_run_states_its_capacity(steps_dir, tmp_path):
    steps = pd.read_csv(steps_dir / wa.STEPS_FILE)
    assert steps["users"].tolist() == [5, 10, 15]
    assert (steps["end"] - steps["hold_start"]).min() >= 2.9
    files = build_report(steps_dir, output=tmp_path / "r", target_users=1000)
    markdown = files.markdown.read_text()
    cap = files.capacity
    assert cap.steps["users"].tolist() == [5, 10, 15]
    assert cap.fit is not None and cap.fit.points == 3
    assert cap.max_users == 15 and cap.lower_bound and cap.instances is None
    assert "Steps tested (users): 5, 10, 15." in markdown
    assert "Measured: the largest step, 15 users, met the SLO (p95 turn:e2e " in markdown
    assert "one instance carries at least 15 users" in markdown
    assert "no step broke the SLO, so the real limit was not reached" in markdown
    assert "USL fit of throughput against users" in markdown
    assert "For 1000 users:" not in markdown
    assert "No instance projection for 1000 users: the per-instance limit" in markdown
    assert "steps from the capacity run's steps.csv" in markdown
    throughput = cap.steps.set_index("users")["throughput_tps"]
    assert throughput[5] < throughput[10] < throughput[15]


def test_report_with_a_baseline_highlights_the_regression(chat_dir, tmp_path):
    raw = pd.read_csv(samples_csv(chat_dir), dtype=str, keep_default_na=False)
    e2e = raw["name"] == "turn:e2e"
    raw.loc[e2e, "ms"] = (raw.loc[e2e, "ms"].astype(float) * 3).map("{:.3f}".format)
    slow = tmp_path / "slow"
    slow.mkdir()
    raw.to_csv(slow / "samples.csv", index=False)
    shutil.copy(chat_dir / "run.json", slow / "run.json")
    files = build_report(slow, baseline=chat_dir, output=tmp_path / "r")
    _assert_figures(files.folder, ["comparison.png"])
    markdown = files.markdown.read_text()
    assert "## Comparison with the baseline" in markdown
    assert re.search(r"\| \*\*turn:e2e\*\* \| \*\*⚠ regression\*\* \|", markdown)
    assert "1 regression(s): `turn:e2e`" in markdown
    page = files.html.read_text()
    assert '<tr class="marked"><td class="">turn:e2e</td>' in page
    assert files.comparison.set_index("name").loc["turn:e2e", "regression"]


def test_bad_input_ends_in_one_message_and_exit_status_2(tmp_path, chat_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "samples.csv").write_text("")
    header_only = write_run(tmp_path / "header", [])
    cases = [
        ((str(tmp_path),), "not a wsload run folder"),
        ((str(empty),), "is empty"),
        ((str(header_only),), "holds no samples"),
        ((str(chat_dir), "--baseline", str(tmp_path / "nowhere")), "--baseline:"),
        ((str(chat_dir), "--target-users", "0"), "--target-users"),
        ((str(chat_dir), "--output", str(empty / "samples.csv")), "is a file"),
    ]
    for args, message in cases:
        assert main(["report", *args]) == 2, args
        captured = capsys.readouterr()
        assert captured.err.startswith("wsload: error: ") and message in captured.err
        assert captured.out == ""
    done = subprocess.run(  # the real command: no traceback, one message, status 2
        [sys.executable, "-m", "wsload", "report", str(tmp_path / "nowhere")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("wsload: error: ") and "is not a folder" in done.stderr


def test_bad_step_options_stop_the_capacity_run_with_exit_2(tmp_path):
    done = locust(
        "capacity.py", "--step-start", "5", "--step-max", "2", "--results", str(tmp_path / "r")
    )
    assert done.returncode == 2
    assert "wsload: error: --step-max must be at least --step-start" in done.stderr
    assert not is_run_folder(tmp_path / "r")


def test_a_target_with_a_known_capacity_limit_is_found_within_one_step(tmp_path):
    """Past 10 concurrent turns the reference target stretches every delay of every turn
    (``--capacity 10 --overload-delay 0.2``: +0.1 s per delay at 15 turns). A search with
    think time 0 (users = concurrent turns) must state a capacity within one step of 10."""
    knobs = subprocess.run(
        [sys.executable, "-m", "wsload", "target", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    if "--capacity" not in knobs or "--overload-delay" not in knobs:
        pytest.skip(
            "the reference target has no --capacity/--overload-delay knobs (turns slow "
            "down past N concurrent turns per process): no known capacity limit to find"
        )
    done = locust(
        "capacity.py",
        *("--step-start", "5", "--step-size", "5", "--step-max", "25", "--step-hold", "3"),
        *("--step-search", "--step-resolution", "5", "--think-time", "0"),
        *("--slo-e2e-p95", "600", "--results", str(tmp_path / "run")),
        "--target-args=--capacity 10 --overload-delay 0.2 --ttfe 0.2 --gap 0.05",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    steps = pd.read_csv(tmp_path / "run" / wa.STEPS_FILE)
    assert steps["verdict"].tolist()[:2] == ["ok", "ok"] and "breach" in steps["verdict"].tolist()
    files = build_report(tmp_path / "run", target_users=1000)
    cap = files.capacity
    assert cap.slo.e2e_p95_ms == 600  # the run's own SLO, from run.json
    assert cap.max_users is not None and abs(cap.max_users - 10) <= 5, cap.statement()
    assert cap.first_breach_users is not None and cap.first_breach_users <= 15
    markdown = files.markdown.read_text()
    assert "Measured limit: the largest user count meeting the SLO is" in markdown
    assert cap.instances == math.ceil(1000 / cap.max_users)
    assert f"For 1000 users: {cap.instances} instance(s)" in markdown
