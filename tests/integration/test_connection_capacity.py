"""locustfiles/connections.py for real: budgets refused before load, sessions held from
several source addresses over worker processes, memory and the report's statement."""

from __future__ import annotations

import resource
import socket

import pytest
from wsload_runs import locust

from wsload.analysis import load_run
from wsload.analysis.connections import connection_capacity, memory_timeline
from wsload.reports import build_report


def processes(count: int) -> list[str]:
    """``--processes`` on a free master port (Locust's 5557 may be another run's)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    return ["--processes", str(count), "--master-bind-port", port, "--master-port", port]


def lowered_file_limit(limit: int):
    """preexec_fn: this process and its children may open ``limit`` files."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def test_a_ramp_past_the_ports_of_one_source_address_stops_before_load(tmp_path):
    done = locust("connections.py", "-u", "30000", "-r", "1000", "-t", "30s",
                  *processes(2), "--results", str(tmp_path / "run"), timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "30,000 connections per source address and destination" in done.stderr
    assert "ip_local_port_range" in done.stderr
    assert "fix: --source-ips 127.0.0.2-127.0.0.3" in done.stderr
    assert not (tmp_path / "run" / "samples.csv").exists()  # no user started


def test_past_the_open_files_of_a_process_stops_before_load_naming_processes(tmp_path):
    done = locust("connections.py", "-u", "3000", "-r", "1000", "-t", "30s",
                  "--sessions-per-user", "10", "--source-ips", "127.0.0.2-127.0.0.3",
                  "--results", str(tmp_path / "run"), timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "30,000 users over 1 generator process(es)" in done.stderr
    assert "fix: run --processes 2" in done.stderr
    assert not (tmp_path / "run" / "samples.csv").exists()


@pytest.mark.slow
def test_under_a_low_file_limit_the_message_comes_first_and_the_fix_holds(tmp_path):
    """600 open files per process: 500 sessions need two generator and two target
    processes; refused in one, held without a failure in two."""
    limit = lowered_file_limit(600)
    args = ["-u", "50", "--sessions-per-user", "10", "-r", "50", "-t", "8s",
            "--heartbeat-interval", "1"]  # fmt: skip
    refused = locust("connections.py", *args, "--results", str(tmp_path / "one"),
                     preexec_fn=limit)  # fmt: skip
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "RLIMIT_NOFILE soft 600, hard 600" in refused.stderr
    assert "--processes 2" in refused.stderr
    folder = tmp_path / "two"
    held = locust("connections.py", *args, *processes(2), "--target-args",
                  "--workers 2", "--results", str(folder), preexec_fn=limit)  # fmt: skip
    assert held.returncode == 0, held.stderr[-3000:]
    cap = connection_capacity(load_run(folder))
    assert cap.peak_sessions == cap.held_cleanly == 500
    assert cap.failures == {}


@pytest.mark.slow
def test_sessions_are_held_with_heartbeats_from_source_addresses_and_reported(tmp_path):
    folder = tmp_path / "run"
    done = locust("connections.py", "-u", "20", "--sessions-per-user", "5", "-r", "20",
                  "-t", "7s", *processes(2), "--source-ips", "127.0.0.2-127.0.0.3",
                  "--heartbeat-interval", "1", "--trickle-interval", "2",
                  "--results", str(folder))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(folder)
    samples = run.samples
    acked = samples.loc[(samples["name"] == "auth") & samples["ok"]]
    assert len(acked) == 100 and set(acked["node"]) == {"w0", "w1"}
    pings = samples.loc[samples["name"] == "ping"]
    assert len(pings) >= 200 and pings["ok"].all()  # ~1 a second per session, answered
    turns = samples.loc[samples["name"] == "turn:e2e"]
    assert len(turns) >= 100 and turns["ok"].all()  # the trickle: a turn per 2 s
    memory = memory_timeline(run)
    assert memory["sessions"].max() == 100  # summed over the two workers' gauges
    assert memory["memory_kb"].max() > 10_000 and memory["target_memory_kb"].max() > 10_000
    cap = connection_capacity(run)
    assert (cap.peak_sessions, cap.held_cleanly, cap.failures) == (100, 100, {})
    assert cap.ramp_per_s is not None and cap.ramp_per_s > 0
    report = build_report(folder, output=tmp_path / "report")
    text = report.markdown.read_text()
    assert "Largest count held cleanly: **100 sessions**" in text
    assert (tmp_path / "report" / "connections.png").stat().st_size > 10_000


def test_a_user_keeps_pinging_its_sessions_while_another_of_its_handshakes_stalls(tmp_path):
    """A third of the upgrades are answered after 3 s: the sessions a user already holds
    keep their 0.5 s heartbeat meanwhile (a user blocked in a handshake would let them
    go silent, which a real server's heartbeat timeout punishes)."""
    folder = tmp_path / "run"
    done = locust("connections.py", "-u", "4", "--sessions-per-user", "4", "-r", "4",
                  "-t", "8s", "--heartbeat-interval", "0.5", "--results", str(folder),
                  "--target-args", "--slow-handshake 3 --slow-handshake-fraction 0.3 --seed 7",
                  timeout=90)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    samples = load_run(folder).samples
    connects = samples.loc[samples["name"] == "connect"]
    assert (connects["latency_ms"] > 2500).sum() >= 2  # some handshakes did stall
    pings = samples.loc[samples["name"] == "ping"].sort_values("ts")
    assert len(pings) >= 50 and pings["ok"].all()
    gaps = pings.groupby("session")["ts"].diff().dropna()
    assert gaps.max() < 1.5, gaps.sort_values().tail()
