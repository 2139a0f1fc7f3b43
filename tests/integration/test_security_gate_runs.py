"""What a CI gate user sees, on real Locust runs: leaks caught, lax handshakes kept apart,
rejected sessions and crashes said in words, names checked before load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import SECRET

from wsload.run.tables import is_run_folder

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
ISOLATION = "security: isolation: foreign_event.count == 0 abort"


def locust(run: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("JWT_SECRET_KEY", "GITHUB_STEP_SUMMARY")
    }
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
        + ["--only-summary", "--results", str(run), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_server_leaking_events_to_other_users_fails_the_gate_by_name(tmp_path, fastapi_backend):
    server = fastapi_backend(LEAK_FRACTION="0.05")
    run = tmp_path / "run"
    done = locust(
        run,
        *("-u", "6", "-r", "6", "-t", "30s", "--think-time", "0.05"),
        *("--host", server.host, "--jwt-secret", SECRET),
        *("--threshold", "turn:e2e p95 < 5s"),
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "aborting the run" in done.stderr and "foreign_event" in done.stderr
    assert "gate: PASSED" not in done.stdout and "gate: FAILED" in done.stdout
    assert "isolation:" in done.stdout  # the summary's security lines
    junit = ET.parse(run / "gate-junit.xml").getroot()
    case = next(c for c in junit.iter("testcase") if c.get("name") == ISOLATION)
    assert case.find("failure") is not None
    assert "security: isolation: `foreign_event.count == 0 abort`" in (run / "gate.md").read_text()
    gate = json.loads((run / "gate.json").read_text())
    (row,) = [r for r in gate["thresholds"] if r["check"] == ISOLATION]
    assert row["verdict"] == "fail" and row["observed"] >= 1


def test_a_lax_handshake_with_enforced_auth_does_not_abort_or_fail_security(
    tmp_path, fastapi_backend
):
    """FastAPI under uvicorn with wsproto: a malformed Sec-WebSocket-Key gets a 101."""
    server = fastapi_backend("--ws", "wsproto")
    run = tmp_path / "run"
    done = locust(
        run,
        *("-u", "3", "-r", "3", "-t", "6s", "--think-time", "0.1", "--probe-interval", "0.05"),
        *("--host", server.host, "--jwt-secret", SECRET),
        *("--threshold", "turn:e2e p95 < 5s"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "aborting" not in done.stderr
    assert "bad_websocket_key     accepted" in done.stdout and "NOT CONFORMANT" in done.stdout
    assert "NOT ENFORCED" not in done.stdout
    rows = json.loads((run / "gate.json").read_text())["thresholds"]
    security = {r["check"]: r["verdict"] for r in rows if r["check"].startswith("security")}
    assert security["security: auth enforced: probe.auth_not_enforced == 0 abort"] == "pass"
    offline = subprocess.run(
        [sys.executable, "-m", "wsload", "gate", str(run), "-t", "conformance.failures == 0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert offline.returncode == 1 and "conformance.failures == 0" in offline.stdout


def test_a_wrong_secret_is_said_in_words_and_the_gate_does_not_pass(tmp_path, target):
    run = tmp_path / "run"
    done = locust(
        run,
        *("-u", "3", "-r", "3", "-t", "4s", "--think-time", "0.2"),
        *("--host", target.url, "--jwt-secret", "not-the-secret"),
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1
    assert "100% of sessions were rejected at auth" in out
    assert "is the secret, issuer or audience right?" in out
    assert "gate: PASSED" not in out and "gate: FAILED" in out
    assert "InsecureKeyLengthWarning" not in out and "warnings.warn" not in out
    assert out.count("the JWT secret is 14 bytes") == 1


def test_a_threshold_on_a_name_no_run_produces_stops_before_load(tmp_path):
    run = tmp_path / "run"
    started = time.monotonic()
    done = locust(run, "-u", "2", "-t", "30s", "--threshold", "e2e p95 < 5s", timeout=40)
    assert done.returncode == 2
    assert "did you mean 'turn:e2e'?" in done.stderr and "Traceback" not in done.stderr
    assert not is_run_folder(run) and time.monotonic() - started < 20


def test_without_probes_the_auth_check_is_not_measured_rather_than_passed(tmp_path):
    run = tmp_path / "run"
    done = locust(run, "-u", "2", "-r", "2", "-t", "3s", "--probe-users", "0")
    assert done.returncode == 0, done.stdout[-2000:]
    line = next(x for x in done.stdout.splitlines() if "probe.auth_not_enforced" in x)
    assert "not measured" in line and "no auth probe ran" in line
    assert "gate: PASSED (7 thresholds, 1 not measured)" in done.stdout


def test_a_killed_run_is_flagged_by_the_summary_and_the_gate(tmp_path):
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    process = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
        + ["-u", "2", "-r", "2", "-t", "60s", "--think-time", "0.1", "--results", str(run)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            sum(p.stat().st_size for p in run.glob("*.arrows")) < 2000
        ):
            time.sleep(0.2)
        time.sleep(1.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the embedded target dies with it
        process.wait(timeout=10)
    assert json.loads((run / "run.json").read_text())["stopped"] is None
    for command in (["summary", str(run)], ["gate", str(run)]):
        done = subprocess.run(
            [sys.executable, "-m", "wsload", *command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "did not stop cleanly (crashed or killed) at about" in done.stdout, command
    gate = json.loads((run / "gate.json").read_text())
    assert gate["crashed"].startswith("This run did not stop cleanly")
    assert "did not stop cleanly" in ET.parse(run / "gate-junit.xml").find(".//system-err").text


def test_a_profile_without_isolation_fields_says_so_once_at_start(tmp_path):
    profile = tmp_path / "no_ids.toml"
    profile.write_text('name = "no-ids"\n[events]\nuser_id_field = ""\nthread_id_field = ""\n')
    done = locust(tmp_path / "run", "-u", "1", "-r", "1", "-t", "2s", "--ws-profile", str(profile))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-2000:]
    assert (
        out.count("isolation checks by user (no field set) and thread (no field set) are off") == 1
    )
