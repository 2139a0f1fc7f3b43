"""No secret leaves wsload: a full run with recognisable secrets, every output grepped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wsload.run.export import export_csv
from wsload.run.recorder import redact, redact_text

REPO = Path(__file__).resolve().parents[2]
SECRET = "ZEBRA-SECRET-8e1b1c57-do-not-leak-0123456789"
PASSWORD = "OKAPI-PASSWORD-5f2a"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.")


@pytest.mark.slow
def test_a_full_run_leaks_no_secret_password_or_token_anywhere(tmp_path):
    creds = tmp_path / "users.csv"
    creds.write_text("email,password\n" + "".join(f"s{i}@corp.test,{PASSWORD}\n" for i in range(4)))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
        + ["-u", "5", "-r", "5", "-t", "6s", "--think-time", "0.2", "--probe-interval", "0.1"]
        + ["--token-source", "login", "--credentials", str(creds), "--ws-carrier", "query"]
        + ["--token-lifetime", "2", "--heartbeat-interval", "0.5", "--no-security-gate"]
        + ["--target-args", f"--login-password {PASSWORD} --auth-mode relaxed"]
        + ["--results", str(out_dir / "run"), "--csv", str(out_dir / "stats")]
        + ["--html", str(out_dir / "report.html"), "--json-file", str(out_dir / "stats")]
        + ["--logfile", str(out_dir / "locust.log"), "--loglevel", "DEBUG"],
        cwd=REPO,
        env={**os.environ, "JWT_SECRET_KEY": SECRET},
        capture_output=True,
        text=True,
        timeout=120,
    )
    export_csv(out_dir / "run", out_dir / "run" / "samples.csv")  # the tables, as text
    outputs = {"stdout": run.stdout, "stderr": run.stderr}
    for path in out_dir.rglob("*"):
        if path.is_file():
            outputs[str(path.relative_to(out_dir))] = path.read_text(errors="replace")
    assert "run/samples.csv" in outputs and "report.html" in outputs and "run/run.json" in outputs
    assert "http:login" in outputs["run/samples.csv"]  # the logins really happened
    for locust_output in ("stats_stats.csv", "report.html", "stats.json"):  # Locust's own
        assert "turn:e2e" in outputs[locust_output] and "connect" in outputs[locust_output]
    for name, text in outputs.items():
        assert SECRET not in text, f"the JWT secret leaked into {name}"
        assert PASSWORD not in text, f"a password leaked into {name}"
        assert not JWT.search(text), f"a token leaked into {name}: {JWT.search(text).group()}"


def test_redaction_masks_secret_options_flags_and_tokens():
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    clean = redact(
        {
            "jwt_secret": "s3cret",
            "target_args": "--ttfe 1 --jwt-secret abc --login-password=pw",
            "host": f"ws://h/ws?token={token}",
            "token_lifetime": 3.0,
            "credentials": "users.csv",
        }
    )
    assert clean["jwt_secret"] == "***redacted***"
    assert "abc" not in clean["target_args"] and "pw" not in clean["target_args"]
    assert "--ttfe 1" in clean["target_args"]
    assert token not in clean["host"] and clean["token_lifetime"] == 3.0
    assert clean["credentials"] == "users.csv"
    assert redact_text(f"Bearer {token}") == "Bearer ***jwt***"
