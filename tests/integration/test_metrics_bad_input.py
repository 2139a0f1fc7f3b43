"""Bad live-metrics input stops Locust at start with one clear message and exit status 2:
a busy ``--metrics-port``, and a malformed ``OTEL_*`` setting with ``--otel``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def start(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JWT_"))}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
        + ["-u", "1", "-t", "20s", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error(done: subprocess.CompletedProcess) -> str:
    """The one ``wsload: error`` message (with its fix line); no traceback, no load."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "recording raw samples" not in done.stderr
    assert done.stderr.count("wsload: error:") == 1, done.stderr
    return done.stderr[done.stderr.index("wsload: error:") :]


def test_a_busy_metrics_port_stops_the_run_at_start():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = start("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    message = one_error(done)
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)" in (
        message
    )
    assert "fix: pass a free port to --metrics-port" in message


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("OTEL_METRICS_EXPORTER", "prometheus", "is not an exporter"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "is not an OTLP protocol"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "5s", "is not a number of milliseconds"),
    ],
)
def test_a_malformed_otel_setting_stops_the_run_before_opentelemetry_starts(variable, value, says):
    done = start("--otel", **{variable: value})
    message = one_error(done)
    assert f"{variable}={value!r} {says}" in message and f"fix: set {variable}" in message
    assert "WARNING" not in done.stderr  # said once, by wsload, before Locust's own set-up
