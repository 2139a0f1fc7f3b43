"""wsload's options in Locust's web UI: listed for editing, the secret and start-up-only
knobs never in the page."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "RECOGNISABLE-SECRET-4f1d2c3b-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_options_show_in_the_web_ui_and_the_secret_does_not(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py"]
        + ["--web-host", "127.0.0.1", "--web-port", str(port), "--think-time", "0.7"]
        + ["--results", str(tmp_path / "r")],
        cwd=REPO,
        env={**os.environ, "JWT_SECRET_KEY": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    page = r.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert page, "the web UI did not answer"
        for dest in ("ws_profile", "think_time", "messages_per_session"):
            assert dest in page, dest
        assert "target_args" not in page  # applies at start-up only: not offered in the form
        assert "request_events" not in page
        assert "0.7" in page  # the value given on the command line is the UI default
        assert SECRET not in page and "jwt_secret" not in page
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert SECRET not in out
