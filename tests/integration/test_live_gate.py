"""The gate inside a live run: exit codes, abort, and agreement with the offline gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsload.gate.config import RUN_CHECKS, SECURITY_DEFAULTS
from wsload.run.tables import is_run_folder

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def locust(tmp_path: Path, *args: str, timeout: float = 90):
    env = {
        k: v for k, v in os.environ.items() if k not in ("JWT_SECRET_KEY", "GITHUB_STEP_SUMMARY")
    }
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
        + ["--results", str(tmp_path / "run"), "--only-summary", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return run, time.monotonic() - started


def offline_gate(tmp_path: Path, *args: str):
    return subprocess.run(
        [sys.executable, "-m", "wsload", "gate", str(tmp_path / "run"), *args]
        + ["--json", str(tmp_path / "offline.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def verdicts(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text())
    return {row["threshold"]: row["verdict"] for row in data["thresholds"]}


PASSING = ["turn:e2e p95 < 2s", "auth.failure_rate < 1%", "turn.rate >= 1/s", "goodput >= 90%"]


def test_thresholds_that_hold_exit_0_and_the_offline_gate_agrees(tmp_path):
    args = [a for t in PASSING for a in ("--threshold", t)]
    run, _ = locust(tmp_path, "-u", "5", "-r", "5", "-t", "5s", "--think-time", "0.2", *args)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "gate: passed" in run.stdout.lower()
    live = verdicts(tmp_path / "run" / "gate.json")
    # + the security defaults and the run checks, always on
    implicit = len(SECURITY_DEFAULTS) + len(RUN_CHECKS)
    assert set(live.values()) == {"pass"} and len(live) == len(PASSING) + implicit
    offline = offline_gate(tmp_path, *args)
    assert offline.returncode == 0
    assert verdicts(tmp_path / "offline.json") == live


def test_a_slow_first_event_fails_its_threshold_with_exit_1(tmp_path):
    run, _ = locust(
        tmp_path,
        *("-u", "5", "-r", "5", "-t", "5s", "--think-time", "0.2"),
        *("--target-args", "--ttfe 0.3"),
        *("--threshold", "turn:ttfe p95 < 200ms", "--threshold", "auth.failure_rate < 1%"),
    )
    assert run.returncode == 1
    failing = [line for line in run.stdout.splitlines() if " FAIL " in line]
    assert len(failing) == 1 and "turn:ttfe p95 < 200ms" in failing[0]
    assert (tmp_path / "run" / "gate-junit.xml").is_file()
    offline = offline_gate(tmp_path, "--threshold", "turn:ttfe p95 < 200ms")
    assert offline.returncode == 1


@pytest.mark.parametrize("spread", [(), ("--processes", "2")], ids=["standalone", "workers"])
def test_a_permissive_server_aborts_the_run_at_the_first_accepted_probe(tmp_path, spread):
    # with workers, the master gets their failed rows back from Arrow columns, and only those
    run, took = locust(
        tmp_path,
        *("-u", "5", "-r", "5", "-t", "40s", "--think-time", "0.2", "--probe-interval", "0.1"),
        *("--target-args", "--auth-mode demo", *spread),
    )
    assert run.returncode == 1
    assert "aborting the run" in run.stderr and "auth_not_enforced" in run.stderr
    assert took < 25  # stopped long before its 40 s
    assert "<-- NOT ENFORCED" in run.stdout and "identity mismatches" in run.stdout


def test_the_security_gate_can_be_switched_off_explicitly(tmp_path):
    run, _ = locust(
        tmp_path,
        *("-u", "3", "-r", "3", "-t", "4s", "--think-time", "0.2", "--no-security-gate"),
        *("--target-args", "--auth-mode demo", "--threshold", "turn:e2e p95 < 2s"),
    )
    assert run.returncode == 0, run.stdout[-2000:]


@pytest.mark.parametrize(
    "bad", ["turn:e2e p95 < 5 parsecs", "auth.failure_rate < 1", "connect p95 << 1s"]
)
def test_a_malformed_threshold_stops_before_load_with_exit_2(tmp_path, bad):
    run, took = locust(tmp_path, "-u", "2", "-t", "20s", "--threshold", bad, timeout=30)
    assert run.returncode == 2 and "^" in run.stderr and "Traceback" not in run.stderr
    assert not is_run_folder(tmp_path / "run") and took < 15
