"""Several runs in one Locust process driven through its web UI's HTTP API: each run gets
its own folder, run.json with its own start and stop, summary and gate; a bad form value
is answered with an error and the process keeps serving."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import IO

import pytest

from wsload.run.summary import load_samples

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebUi:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, path: str, form: dict[str, str] | None = None, method: str = "POST") -> str:
        data = urllib.parse.urlencode(form or {}).encode() if method == "POST" else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read().decode()

    def wait_up(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.call("/", method="GET")
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("the web UI did not answer")

    def state(self) -> str:
        return json.loads(self.call("/stats/requests", method="GET"))["state"]

    def wait_state(self, *states: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.state() not in states:
            assert time.monotonic() < deadline, self.state()
            time.sleep(0.2)

    def swarm(self, **extra: str) -> dict:
        form = {"user_count": "3", "spawn_rate": "3"} | extra
        return json.loads(self.call("/swarm", form))


def start_locust_ui(tmp_path: Path, port: int, log: IO[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    return subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py"]
        + ["--web-host", "127.0.0.1", "--web-port", str(port), "--think-time", "0.2"]
        + ["--results", str(tmp_path / "run"), "--threshold", "turn:e2e p95 < 5s"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_each_web_ui_run_gets_its_own_folder_summary_and_gate(tmp_path):
    port = free_port()
    log = (tmp_path / "locust.log").open("w")
    proc = start_locust_ui(tmp_path, port, log)
    ui = WebUi(port)
    try:
        ui.wait_up()
        bad = ui.swarm(think_time="abc")
        assert bad["success"] is False and "--think-time 'abc'" in bad["message"], bad
        assert ui.state() in ("ready", "stopped")  # nothing started, the process serves on
        windows = []
        for run in range(2):
            started = time.time()
            answer = ui.swarm(think_time="0.2")
            assert answer["success"] is True, answer
            ui.wait_state("running")
            time.sleep(3)
            ui.call("/stop")
            ui.wait_state("stopped")
            stopped = time.time()
            windows.append((started, stopped))
            if run == 0:
                ui.call("/stats/reset")
            time.sleep(1)
        again = ui.swarm(think_time="gauss:1")  # still answering after two runs
        assert again["success"] is False and "gauss:1" in again["message"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    output = (tmp_path / "locust.log").read_text()
    assert "Traceback" not in output, output[-3000:]
    folders = [tmp_path / "run", tmp_path / "run-2"]
    for folder, (started, stopped) in zip(folders, windows, strict=True):
        for name in ("turns.00000.parquet", "run.json", "gate.json", "gate-junit.xml"):
            assert (folder / name).is_file(), (folder, name)
        meta = json.loads((folder / "run.json").read_text())
        assert started - 1 <= meta["started"] <= stopped
        assert meta["stopped"] is not None and meta["started"] < meta["stopped"] <= stopped + 1
        assert meta["target_args"] == "" and meta["embedded_target"] is True
        samples = load_samples(folder)
        assert (samples["name"] == "turn:e2e").sum() > 5
        assert samples["ts"].min() >= started - 1 and samples["ts"].max() <= stopped + 1
        assert meta["run_id"] in set(samples["run_id"])
    first, second = (json.loads((f / "run.json").read_text()) for f in folders)
    assert first["stopped"] < second["started"]
    assert output.count("gate: PASSED") == 2 and output.count("results: ") == 2
    assert f"results: {folders[0]} " in output and f"results: {folders[1]} " in output


RUN_ENDED = re.compile(r"^\[(?P<at>[0-9-]+ [0-9:]+,[0-9]+)\] .*run ended in (?P<s>[0-9.]+) s", re.M)


def test_the_web_ui_answers_while_a_stopped_run_compacts_summarises_and_gates(tmp_path):
    """Ending a run takes a second or more (compaction, DuckDB, the gate): the UI must keep
    answering meanwhile (its state, the panel), not freeze until the gate is written."""
    port = free_port()
    log_path = tmp_path / "locust.log"
    log = log_path.open("w")
    proc = start_locust_ui(tmp_path, port, log)
    ui = WebUi(port)
    answered: list[float] = []  # when each answer of the (uncached) panel JSON came
    try:
        ui.wait_up()
        assert ui.swarm(user_count="6", spawn_rate="6")["success"] is True
        ui.wait_state("running")
        time.sleep(4)
        stopping = threading.Thread(target=ui.call, args=("/stop",))
        stopping.start()
        deadline = time.monotonic() + 60
        while not RUN_ENDED.search(log_path.read_text()):
            assert time.monotonic() < deadline, "the run did not end within 60 s"
            ui.call("/wsload/headline", method="GET")
            answered.append(time.time())
            time.sleep(0.02)
        stopping.join(timeout=30)
        ui.wait_state("stopped")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    ended = RUN_ENDED.search(log_path.read_text())
    assert ended is not None
    ended_at = datetime.strptime(ended["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    took = float(ended["s"])
    assert took >= 0.3, ended.group(0)  # long enough for a frozen UI to show
    during = [at for at in answered if ended_at - took + 0.1 < at < ended_at - 0.05]
    # Polled every 20 ms: a hub busy with the end of the run would not answer at all.
    assert len(during) >= 5, (ended.group(0), [round(at - ended_at, 2) for at in answered])
