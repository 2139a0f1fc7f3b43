"""Raw rows in distributed and crashed runs: one folder, exact counts, nothing flushed lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsload.run.summary import load_samples
from wsload.run.tables import read_table

REPO = Path(__file__).resolve().parents[2]
LOCUST = [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py"]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(*args: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    return subprocess.Popen(
        [*LOCUST, *args], cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def locust_counts(prefix: Path) -> dict[str, int]:
    """Locust's final request counts (its --json-file is written after the users stop; its
    _stats.csv is rewritten once a second and can trail the end of a busy run)."""
    entries = json.loads(Path(f"{prefix}.json").read_text())
    return {entry["name"]: entry["num_requests"] for entry in entries}


def start_cluster(tmp_path: Path, *master_args: str) -> tuple[subprocess.Popen, list]:
    port = free_port()
    master = spawn(
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        "2",
        "--headless",
        *master_args,
        log=tmp_path / "master.log",
    )
    workers = [
        spawn("--worker", "--master-port", str(port), log=tmp_path / f"worker{i}.log")
        for i in range(2)
    ]
    return master, workers


def test_master_and_two_workers_write_one_folder_with_locusts_exact_counts(tmp_path):
    master, workers = start_cluster(
        tmp_path,
        *("-u", "60", "-r", "30", "-t", "15s", "--think-time", "0.5"),
        *("--results", str(tmp_path / "run"), "--json-file", str(tmp_path / "stats")),
    )
    code = master.wait(timeout=90)
    for w in workers:
        w.wait(timeout=30)
    assert code == 0, (tmp_path / "master.log").read_text()[-3000:]
    samples = load_samples(tmp_path / "run")
    rows = samples.loc[samples["kind"] != "health"]
    assert rows.groupby("name").size().to_dict() == locust_counts(tmp_path / "stats")
    assert set(rows["node"]) == {"w0", "w1"}
    sessions = rows.loc[rows["kind"] == "connect"]
    assert sessions["subject"].is_unique and len(sessions) == 59  # one prober in the cluster
    health = samples.loc[samples["kind"] == "health"]
    assert {"health:cpu", "health:lag"} <= set(health["name"])
    assert {"w0", "w1"} <= set(health["node"])
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["mode"] == "MasterRunner" and meta["stopped"] is not None
    # workers and master agree on the profile's event columns: every offset has one
    turns = read_table(tmp_path / "run", "turns")
    assert "first_ms.agent_started" in turns.schema.names
    assert turns.column("first_ms").null_count == turns.num_rows
    assert turns.column("first_ms.agent_started").null_count < turns.num_rows


def test_a_worker_killed_mid_run_keeps_its_rows_up_to_the_last_second(tmp_path):
    master, workers = start_cluster(
        tmp_path,
        *("-u", "20", "-r", "20", "-t", "16s", "--think-time", "0.2"),
        *("--results", str(tmp_path / "run")),
    )
    # both workers' rows reach the folder first (a loaded machine starts workers slowly)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(1)
        with contextlib.suppress(Exception):  # the first second of a folder being written
            if {"w0", "w1"} <= set(load_samples(tmp_path / "run")["node"]):
                break  # (the master's own health rows are there too, under its host name)
    time.sleep(3)
    victim = workers[0]
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    victim.wait(timeout=10)
    master.wait(timeout=120)
    workers[1].wait(timeout=30)
    samples = load_samples(tmp_path / "run")
    nodes = samples.groupby("node")["ts"].max()
    victim_node = next(n for n in ("w0", "w1") if nodes[n] < killed_at)
    assert killed_at - nodes[victim_node] < 2.0  # shipped each second: at most ~1 s lost
    assert (samples["node"] == victim_node).sum() > 100


def test_a_killed_standalone_run_leaves_a_readable_folder_and_the_next_run_starts(tmp_path):
    run = spawn(
        "--headless",
        *("-u", "10", "-r", "10", "-t", "60s", "--think-time", "0.2"),
        *("--results", str(tmp_path / "run")),
        log=tmp_path / "run.log",
    )
    time.sleep(8)
    run.send_signal(signal.SIGKILL)
    killed_at = time.time()
    run.wait(timeout=10)
    samples = load_samples(tmp_path / "run")
    assert killed_at - samples["ts"].max() < 2.5 and len(samples) > 100
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["stopped"] is None  # the crash shows: started, never stopped
    summary = subprocess.run(
        [sys.executable, "-m", "wsload", "summary", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert summary.returncode == 0 and "turn:e2e" in summary.stdout
    again = spawn(
        "--headless", "-u", "2", "-r", "2", "-t", "3s", log=tmp_path / "again.log"
    )  # default folder results/<new run id>: the partial one is not in the way
    assert again.wait(timeout=60) == 0


def test_a_worker_late_with_its_last_records_at_the_quit_still_gets_them_written(tmp_path):
    # Locust's headless master gives its workers half a second after "quit"; a worker that
    # is busy (here: stopped) across the quit sends its last second of records later.
    master, workers = start_cluster(
        tmp_path,
        *("-u", "10", "-r", "10", "-t", "8s", "--think-time", "0.2"),
        *("--results", str(tmp_path / "run")),
    )
    log = tmp_path / "master.log"
    deadline = time.monotonic() + 60
    while "Sending spawn jobs" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(7.0)  # the run stops at 8 s
    late = workers[0]
    late.send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    time.sleep(2.5)  # across the master's quit and its half second
    late.send_signal(signal.SIGCONT)
    assert master.wait(timeout=60) == 0, log.read_text()[-3000:]
    for w in workers:
        w.wait(timeout=30)
    samples = load_samples(tmp_path / "run")
    rows = samples.loc[samples["kind"] != "health"]
    last = rows.groupby("node")["ts"].max()
    assert set(last.index) == {"w0", "w1"}
    # the late worker's final batch: its records up to the moment it stopped
    assert max(stopped_at - last[n] for n in last.index) < 0.5, (stopped_at, last.to_dict())
    assert "sent no final records" not in log.read_text()
