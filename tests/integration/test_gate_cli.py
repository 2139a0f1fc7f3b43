"""``wsload gate RUN_DIR``: exit codes, outputs, and real headless runs against the target."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from wsload.cli import main
from wsload.gate import build_config
from wsload.run.recorder import COLUMNS, RUN_FILE, SAMPLES_FILE

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "locustfiles" / "ws_auth.py"
T0 = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _no_github_summary(monkeypatch):
    """Tests never append to a real job summary when they run under GitHub Actions."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def write_run(folder: Path, turns: int = 20, ttfe_ms: float = 50.0) -> Path:
    """A run folder as the recorder writes it: a connect, an auth, turns over 10 s."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []

    def row(ts, kind, name, ms, *, turn="", ok=1, failure=""):
        fields = {"v": 1, "run_id": "r", "node": "n", "ts": f"{ts:.6f}", "user": 1}
        fields |= {"subject": "s", "session": "n-1-1", "turn": turn, "kind": kind}
        fields |= {"name": name, "ms": f"{ms:.3f}", "ok": ok, "failure": failure, "users": 1}
        rows.append(fields)

    row(T0, "connect", "connect", 3.0)
    row(T0, "auth", "auth", 1.0)
    for i in range(turns):
        ts = T0 + 0.5 * i
        row(ts, "event", "turn:ttfe", ttfe_ms, turn=i)
        row(ts, "gap", "turn:gap", 10.0, turn=i)
        row(ts, "turn", "turn:e2e", ttfe_ms + 40.0, turn=i)
    with (folder / SAMPLES_FILE).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    (folder / RUN_FILE).write_text(json.dumps({"started": T0, "stopped": T0 + 10.0}))
    return folder


def wsload(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wsload", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**{k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}, **(env or {})},
    )


def test_a_passing_gate_exits_0_and_writes_its_outputs_into_the_run_folder(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    code = main(
        ["gate", str(run), "-t", "turn:ttfe p95 < 200ms", "-t", "turn.rate >= 2/s"]
        + ["-t", "goodput >= 99%", "-t", "auth.failure_rate < 1%"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "gate: PASSED (11 thresholds, 1 not measured)" in out  # no probes in this run
    assert json.loads((run / "gate.json").read_text())["passed"] is True
    assert ET.parse(run / "gate-junit.xml").getroot().get("failures") == "0"
    assert (run / "gate.md").read_text().startswith("### wsload gate: ✅ passed")


def test_a_failing_threshold_exits_1_and_the_table_names_it(tmp_path, capsys):
    run = write_run(tmp_path / "run", ttfe_ms=300.0)
    code = main(["gate", str(run), "-t", "turn:ttfe p95 < 200ms", "-t", "turn:e2e p95 < 5s"])
    out = capsys.readouterr().out
    assert code == 1
    failing = [line for line in out.splitlines() if "FAIL" in line and "p95" in line]
    assert failing == [next(line for line in out.splitlines() if line.startswith("turn:ttfe"))]
    assert "300 ms" in failing[0]


def test_a_thresholds_file_with_warmup_and_explicit_output_paths(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    gate_file = tmp_path / "gate.toml"
    gate_file.write_text(
        'warmup = "2s"\n[[threshold]]\nexpression = "turn:e2e.count == 16"\n'
        '[[threshold]]\nexpression = "connect p95 < 1s optional"\n'
    )
    out_dir = tmp_path / "out"
    code = main(
        ["gate", str(run), "--thresholds", str(gate_file), "--no-security-gate"]
        + ["--json", str(out_dir / "g.json"), "--junit", str(out_dir / "j.xml")]
        + ["--markdown", str(out_dir / "g.md")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "first 2 s ignored as warm-up" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["g.json", "g.md", "j.xml"]
    assert not (run / "gate.json").exists()


def test_the_step_summary_gets_the_markdown_under_github_actions(tmp_path):
    run = write_run(tmp_path / "run")
    summary = tmp_path / "step-summary.md"
    done = wsload(
        "gate", str(run), "-t", "turn:e2e p95 < 5s", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert done.returncode == 0, done.stderr
    assert "| `turn:e2e p95 < 5s` |" in summary.read_text()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-t", "turn:ttfe p95 < 200"], "needs a unit"),
        (["-t", "turn:ttfe p95 < 200ms abort"], "'abort' does not fit"),
        (["--warmup", "10"], "not a duration"),
        (["--no-security-gate"], "no thresholds to gate on"),
        (["--thresholds", "nope.toml"], "cannot read the thresholds file"),
    ],
)
def test_a_configuration_error_exits_2_with_a_message_and_no_traceback(tmp_path, args, words):
    run = write_run(tmp_path / "run")
    done = wsload("gate", str(run), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (run / "gate.json").exists()


def test_a_malformed_threshold_points_at_the_character(tmp_path):
    run = write_run(tmp_path / "run")
    done = wsload("gate", str(run), "-t", "turn:ttfe p95 < 200sec")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    quoted = next(i for i, line in enumerate(lines) if line.strip() == "turn:ttfe p95 < 200sec")
    assert lines[quoted + 1].index("^") == lines[quoted].index("sec")


def test_a_folder_without_samples_exits_2(tmp_path):
    done = wsload("gate", str(tmp_path), "-t", "turn:e2e p95 < 5s")
    assert done.returncode == 2
    assert "not a wsload run folder" in done.stderr


# real runs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """Two 5-user, 5-second headless runs against the embedded target, side by side."""
    base = tmp_path_factory.mktemp("gate-runs")
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    runs = {"normal": [], "slow": ["--target-args", "--ttfe 0.3"]}
    procs = {}
    for label, extra in runs.items():
        procs[label] = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
            + ["-u", "5", "-r", "5", "-t", "5s", "--think-time", "0.2", "--only-summary"]
            + ["--loglevel", "WARNING", "--results", str(base / label), *extra],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    for label, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{label}: {err[-2000:]}"
    return {label: base / label for label in runs}


SENSIBLE = [
    "connect p95 <= 2.4s",
    "auth p95 <= 1s",
    "auth.failure_rate < 1%",
    "turn:ttfe p95 < 2s",
    "turn:e2e p99 < 5s",
    "turn.failure_rate < 1%",
    "refused.count == 0",
    "turn.rate >= 1/s",
    "goodput >= 95%",
]


@pytest.mark.slow
def test_a_real_run_against_the_reference_target_passes_sensible_thresholds(real_runs):
    args = [a for t in SENSIBLE for a in ("-t", t)]
    done = wsload("gate", str(real_runs["normal"]), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = len(build_config(thresholds=SENSIBLE).effective())  # + security and run checks
    assert checks > len(SENSIBLE) and f"gate: PASSED ({checks} thresholds)" in done.stdout


@pytest.mark.slow
def test_a_slow_first_event_fails_the_ttfe_threshold_and_only_it(real_runs):
    done = wsload(
        "gate", str(real_runs["slow"]), "-t", "turn:ttfe p95 < 200ms", "-t", "turn:e2e p99 < 5s"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    failing = [line for line in done.stdout.splitlines() if " FAIL " in f"{line} "]
    assert len(failing) == 1
    assert failing[0].startswith("turn:ttfe p95 < 200ms")
    assert "gate: FAILED (1 of 9 thresholds)" in done.stdout


@pytest.mark.slow
def test_the_example_ci_thresholds_pass_a_healthy_run(real_runs):
    done = wsload("gate", str(real_runs["normal"]), "--thresholds", "examples/ci/thresholds.toml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_live_gate_entry_point_reports_why_a_run_was_aborted(tmp_path):
    from wsload.gate import build_config, gate_run_folder

    run = write_run(tmp_path / "run")
    shown = io.StringIO()
    config = build_config(thresholds=["turn:e2e p95 < 5s"])
    result = gate_run_folder(run, config, aborted="gate abort: x", environ={}, stream=shown)
    assert result.exit_code == 0
    assert "run aborted: gate abort: x" in shown.getvalue()
    assert json.loads((run / "gate.json").read_text())["aborted"] == "gate abort: x"
