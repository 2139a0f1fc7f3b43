"""The notebooks in analysis/ run top to bottom against real runs, as Jupyter runs them (the
kernel in a folder of its own, the run named relative to the repository or found through
results/latest), and tell their story in their outputs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from wsload_runs import REPO, locust, real_run

from wsload.analysis import load_run
from wsload.run.tables import is_run_folder

pytestmark = pytest.mark.slow


def execute(name: str, kernel_folder: Path, run: str | None, monkeypatch) -> nbformat.NotebookNode:
    if run is None:
        monkeypatch.delenv("WSLOAD_RUN", raising=False)  # the notebook's default
    else:
        monkeypatch.setenv("WSLOAD_RUN", run)  # the kernel inherits it
    monkeypatch.setenv("WSLOAD_TARGET_USERS", "500")
    notebook = nbformat.read(REPO / "analysis" / name, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in notebook.cells)
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(kernel_folder)}},
    ).execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> tuple[str, int]:
    texts, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
            texts.append(output.get("text", "") + str(output.get("data", {}).get("text/plain")))
            images += "image/png" in output.get("data", {})
    return "\n".join(texts), images


def relative_to_repository(folder: Path) -> str:
    return os.path.relpath(folder, REPO)


def test_explore_tells_the_story_of_a_run_with_failures(tmp_path_factory, monkeypatch):
    run_dir = tmp_path_factory.getbasetemp() / "wsload-run-agent-errors"
    if not is_run_folder(run_dir):
        done = locust(
            "ws_auth.py",
            *("-u", "6", "-r", "6", "-t", "6s", "--think-time", "0.3"),
            "--target-args=--error-events 0.3 --seed 7",
            *("--results", str(run_dir)),
        )
        assert is_run_folder(run_dir), done.stderr[-3000:]
    # the kernel starts in the notebook folder; the run is named relative to the repository
    relative = relative_to_repository(run_dir)
    notebook = execute("explore.ipynb", REPO / "analysis", relative, monkeypatch)
    text, images = outputs(notebook)
    assert images == 4  # latency over time, waterfall, failures timeline, generator health
    assert "turns completed per second" in text
    assert "turns failed" in text and "(0.00%)" not in text.split("turns failed")[1][:40]
    assert "agent_error" in text  # the failure table and its examples
    failed = load_run(run_dir).samples.query("failure == 'agent_error'").sort_values("t_s")
    assert failed["session"].iloc[0] in text  # the first example names its session
    assert "refused as" in text and "error_frame_close" in text  # probes x outcome
    assert "auth_not_enforced: 0" in text and "foreign_event: 0" in text
    assert "gate: passed" in text
    assert "turn:ttfe" in text and "turn:e2e" in text


def test_explore_reads_results_latest_after_a_demo(tmp_path, monkeypatch):
    """What a user does on a fresh checkout: a demo, then the notebook with no arguments."""
    env = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET_KEY", "WSLOAD_RUN")}
    command = [sys.executable, "-m", "wsload.cli", "demo", "--users", "4", "--run-time", "4s"]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    latest = tmp_path / "results" / "latest"
    assert latest.is_symlink() and os.readlink(latest).startswith("demo-")
    assert "results/latest now names this run" in done.stdout
    # the notebook's default, results/latest, from the folder the kernel starts in
    notebook = execute("explore.ipynb", tmp_path, None, monkeypatch)
    text, images = outputs(notebook)
    assert os.readlink(latest) in text and images == 4


def test_a_demo_that_fails_to_start_does_not_become_latest(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    env["WSLOAD_PROFILE"] = "no-such-profile"  # the run stops before any user starts
    command = [sys.executable, "-m", "wsload.cli", "demo", "--users", "2", "--run-time", "2s"]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode != 0
    assert "recorded nothing" in done.stdout
    assert not (tmp_path / "results" / "latest").exists()
    assert not (tmp_path / "results" / "latest").is_symlink()


def test_capacity_notebook_runs_against_a_real_stepped_run(tmp_path_factory, tmp_path, monkeypatch):
    run_dir = real_run(tmp_path_factory.getbasetemp(), "steps")
    notebook = execute("capacity.ipynb", REPO / "analysis", str(run_dir), monkeypatch)
    text, images = outputs(notebook)
    assert images == 2
    assert "Steps tested (users): 5, 10, 15." in text
    # every step met the SLO: a lower bound, from which no instance count is projected
    assert "No instance projection for 500 users" in text
    assert "no projection: every step up to 15 users met the SLO" in text


def test_the_documented_jupyter_lab_command_finds_the_run(tmp_path_factory, tmp_path):
    """`WSLOAD_RUN=results/<run-id> jupyter lab analysis/` from the repository: a real Jupyter
    server on loopback, a kernel for the notebook (started in its folder), the run loaded."""
    websocket = pytest.importorskip("websocket")
    run_dir = real_run(tmp_path_factory.getbasetemp(), "chat")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    env.update(WSLOAD_RUN=relative_to_repository(run_dir), JUPYTER_RUNTIME_DIR=str(tmp_path))
    jupyter = Path(sys.executable).parent / "jupyter"
    command = [str(jupyter), "lab", "analysis/", "--no-browser", "--ip=127.0.0.1"]
    command += [f"--port={port}", f"--IdentityProvider.token={token}", "--allow-root"]
    server = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "no Jupyter"
                time.sleep(0.3)
        body = {"path": "analysis/explore.ipynb", "type": "notebook", "name": ""}
        request = urllib.request.Request(
            f"{base}/api/sessions?token={token}",
            data=json.dumps({**body, "kernel": {"name": "python3"}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        kernel = json.load(urllib.request.urlopen(request, timeout=60))["kernel"]["id"]
        channels = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}"
        connection = websocket.create_connection(channels, timeout=60)
        code = (
            "import os\nfrom wsload import analysis as wa\n"
            "run = wa.load_run(os.environ['WSLOAD_RUN'])\n"
            "print(os.path.basename(os.getcwd()), run.path.resolve(), len(run.turns))"
        )
        message_id = uuid.uuid4().hex
        header = {"msg_id": message_id, "session": uuid.uuid4().hex, "username": ""}
        header.update(msg_type="execute_request", version="5.3")
        connection.send(
            json.dumps(
                {
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False},
                    "channel": "shell",
                }
            )
        )
        printed, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(connection.recv())
            if message.get("parent_header", {}).get("msg_id") != message_id:
                continue
            assert message["msg_type"] != "error", message["content"]
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        connection.close()
        folder, path, turns = "".join(printed).split()
        assert folder == "analysis"  # the kernel started in the notebook's folder
        assert Path(path) == run_dir.resolve() and int(turns) > 0
    finally:
        server.terminate()
        server.wait(15)
