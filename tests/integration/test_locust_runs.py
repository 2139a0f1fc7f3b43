"""The main locustfile run for real: Locust as a process, headless, against real servers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wsload_runs import results_bytes

from wsload.run.summary import load_samples
from wsload.run.tables import is_run_folder

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "locustfiles" / "ws_auth.py"
pytestmark = pytest.mark.slow


def locust(*args: str, env: dict[str, str] | None = None, timeout: float = 90):
    full_env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stats_rows(prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_fifty_users_without_host_chat_with_no_failures(tmp_path):
    run = locust(
        *("-u", "50", "-r", "25", "-t", "20s", "--think-time", "0.5"),
        *("--csv", str(tmp_path / "run"), "--results", str(tmp_path / "results")),
        *("--json-file", str(tmp_path / "final")),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = stats_rows(tmp_path / "run")
    stages = ["connect", "auth", "turn:ttfe", "turn:agent_started", "turn:agent_thinking"]
    stages += ["turn:tool_executing", "turn:tool_completed", "turn:agent_completed"]
    stages += ["turn:gap", "turn:tool", "turn:e2e"]
    for name in stages:
        assert int(rows[name]["Request Count"]) > 0, name
    assert rows["connect"]["Request Count"] == "49"  # one of the 50 users runs the probes
    assert any(name.startswith("probe:") for name in rows)
    assert rows["Aggregated"]["Failure Count"] == "0"
    samples = load_samples(tmp_path / "results")
    counts = samples.loc[samples["kind"] != "health"].groupby("name").size().to_dict()
    final = json.loads((tmp_path / "final.json").read_text())  # Locust's final totals
    assert counts == {entry["name"]: entry["num_requests"] for entry in final}
    assert samples.loc[samples["kind"] != "health", "subject"].nunique() == 50
    assert "failures: none" in run.stdout


def test_measured_ttfe_and_gaps_match_the_target_within_5ms(tmp_path):
    run = locust(
        *("-u", "5", "-r", "5", "-t", "8s", "--think-time", "0.2"),
        *("--target-args", "--ttfe 0.08 --gap 0.025 --tool-duration 0.025"),
        *("--results", str(tmp_path / "results")),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    samples = load_samples(tmp_path / "results")
    ttfe = samples.loc[samples["name"] == "turn:ttfe", "ms"]
    gaps = samples.loc[samples["name"] == "turn:gap", "ms"]
    assert len(ttfe) >= 30
    assert abs(ttfe.median() - 80) <= 5, ttfe.describe()
    assert abs(gaps.median() - 25) <= 5, gaps.describe()


def test_the_same_locustfile_loads_another_backend_through_options_only(tmp_path):
    secret = "other-backend-secret-0123456789abcdef"
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "other_backend.py")],
        env={**os.environ, "OTHER_SECRET": secret},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline())
        run = locust(
            *("-u", "5", "-r", "5", "-t", "5s", "--think-time", "0.2"),
            *("--host", f"ws://127.0.0.1:{port}"),
            *("--ws-profile", str(REPO / "tests" / "data" / "other_backend.toml")),
            *("--client-mode", "native"),  # header auth: not something a browser can send
            *("--results", str(tmp_path / "results")),
            env={"JWT_SECRET_KEY": secret},
        )
    finally:
        server.kill()
        server.wait()
    assert run.returncode == 0, run.stderr[-3000:]
    samples = load_samples(tmp_path / "results")
    names = set(samples["name"])
    assert {"connect", "auth", "turn:run.start", "turn:run.step", "turn:run.end"} <= names
    assert {"turn:run.output", "turn:e2e"} <= names
    assert samples["ok"].all()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--host", "ws://127.0.0.1:9"], {"JWT_SECRET_KEY": "x" * 40}, "nothing listens at"),
        (["--host", "ws://127.0.0.1:9"], {}, "no JWT secret"),
        (["--ws-profile", "tests/data/nope.toml"], {}, "bad protocol profile"),
        (["--target-args", "--ttfe -1"], {}, "--ttfe"),
        (["--host", "127.0.0.1:8765"], {"JWT_SECRET_KEY": "x" * 40}, "has no scheme"),
        (["--ws-carrier", "header"], {}, "--client-mode native"),
        (["--think-time", "gauss:1"], {}, "--think-time 'gauss:1' is not"),
        (["--token-source", "login"], {}, "--token-source login needs --credentials"),
        (["--corpus", "tests/data/absent.txt"], {}, "cannot read the --corpus file"),
        (
            ["--ws-profile", "tests/data/rs256.toml", "--jwt-private-key", "/nonexistent.pem"],
            {},
            "cannot read the JWT private key file /nonexistent.pem",
        ),
        (["--token-source", "login", "--credentials", "README.md"], {}, "credentials file"),
        (["--thresholds", "README.md"], {}, "README.md"),
        (["--goodput-limit", "turn:gap=fast"], {}, "goodput"),
        (["--reconnect-base", "20", "--reconnect-max", "5"], {}, "--reconnect-base"),
        (["--host", "ws://127.0.0.1:70000"], {"JWT_SECRET_KEY": "x" * 40}, "invalid port"),
    ],
    ids=[
        "unreachable",
        "no-secret",
        "bad-profile",
        "bad-target-args",
        "bad-host",
        "header-in-browser",
        "bad-think-time",
        "login-without-credentials",
        "missing-corpus",
        "unreadable-key",
        "bad-credentials",
        "bad-thresholds-file",
        "bad-goodput-limit",
        "backoff-base-above-max",
        "bad-port",
    ],
)
def test_bad_input_stops_before_any_load_with_one_message(tmp_path, args, env, message):
    run = locust(
        *args, "-u", "1", "-t", "5s", "--results", str(tmp_path / "r"), env=env, timeout=30
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert message in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not is_run_folder(tmp_path / "r")


def test_a_results_folder_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    run = locust("-u", "1", "-t", "3s", "--results", str(blocker), timeout=30)
    assert run.returncode == 2 and "is a file, not a folder" in run.stderr
    assert blocker.read_text() == "not a folder"


def test_an_earlier_run_in_the_results_folder_is_never_overwritten(tmp_path):
    first = locust("-u", "2", "-r", "2", "-t", "2s", "--results", str(tmp_path / "run"))
    assert first.returncode == 0, first.stderr[-2000:]
    before = results_bytes(tmp_path / "run")
    assert before
    again = locust("-u", "1", "-t", "3s", "--results", str(tmp_path / "run"), timeout=30)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert results_bytes(tmp_path / "run") == before


def test_a_saturated_generator_loses_no_rows(tmp_path):
    run = locust(
        *("-u", "100", "-r", "100", "-t", "6s", "--think-time", "0", "--probe-users", "0"),
        *("--target-args", "--ttfe 0 --gap 0 --tool-duration 0", "--heartbeat-interval", "0"),
        *("--results", str(tmp_path / "run"), "--json-file", str(tmp_path / "final")),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    samples = load_samples(tmp_path / "run")
    counts = samples.loc[samples["kind"] != "health"].groupby("name").size().to_dict()
    final = json.loads((tmp_path / "final.json").read_text())
    assert counts == {entry["name"]: entry["num_requests"] for entry in final}
    turns = samples.loc[samples["name"] == "turn:e2e", "ts"]
    seconds = (turns - turns.min()).astype(int).value_counts()
    assert len(seconds) >= 5 and seconds.min() > 0  # every second of the run was written
