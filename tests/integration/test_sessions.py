"""Browser-like sessions for hours: logins, tickets, refresh, heartbeat, storms, restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wsload_runs import samples_csv

from wsload.run.summary import load_samples
from wsload.target import start_target

REPO = Path(__file__).resolve().parents[2]
SECRET = "session-tests-secret-0123456789abcdefgh"
pytestmark = pytest.mark.slow


def run_locust(tmp_path: Path, *args: str, locustfile: str = "ws_auth.py", wait: bool = True):
    env = {**os.environ, "JWT_SECRET_KEY": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", f"locustfiles/{locustfile}", "--headless"]
        + ["--results", str(tmp_path / "run"), "--probe-users", "0", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out, load_samples(tmp_path / "run")


def rows(samples, name):
    return samples.loc[samples["name"] == name]


def test_users_log_in_with_csv_credentials_and_are_acked_as_themselves(tmp_path):
    creds = tmp_path / "users.csv"
    creds.write_text(
        "email,password\n" + "".join(f"u{i}@corp.test,wsload-demo\n" for i in range(5))
    )
    code, out, samples = run_locust(
        tmp_path,
        *("-u", "5", "-r", "5", "-t", "5s", "--think-time", "0.3"),
        *("--token-source", "login", "--credentials", str(creds)),
    )
    assert code == 0, out[-3000:]
    logins = rows(samples, "http:login")
    assert len(logins) == 5 and logins["ok"].all() and set(logins["kind"]) == {"http"}
    connects = rows(samples, "connect")
    assert connects["ok"].all() and len(connects) == 5
    assert rows(samples, "turn:e2e")["ok"].all()
    assert "wsload-demo" not in samples_csv(tmp_path / "run").read_text()


def test_a_subject_never_holds_more_sessions_than_the_profile_allows(tmp_path):
    profile = tmp_path / "one.toml"
    text = (REPO / "wsload" / "profiles" / "default.toml").read_text()
    profile.write_text(text.replace("connections_per_user = 10", "connections_per_user = 1"))
    creds = tmp_path / "users.csv"
    creds.write_text("email,password\na@corp.test,wsload-demo\nb@corp.test,wsload-demo\n")
    code, out, samples = run_locust(
        tmp_path,
        *("-u", "5", "-r", "5", "-t", "4s", "--think-time", "0.3", "--ws-profile", str(profile)),
        *("--token-source", "login", "--credentials", str(creds)),
    )
    assert code == 0, out[-3000:]
    assert len(rows(samples, "http:login")) == 2
    assert "stays idle" in out


def test_the_ticket_carrier_fetches_a_ticket_per_connection(tmp_path):
    code, out, samples = run_locust(
        tmp_path, *("-u", "4", "-r", "4", "-t", "4s", "--ws-carrier", "ticket")
    )
    assert code == 0, out[-3000:]
    assert len(rows(samples, "http:ticket")) == len(rows(samples, "connect")) == 4


def test_the_heartbeat_times_pings(tmp_path):
    code, out, samples = run_locust(
        tmp_path, *("-u", "3", "-r", "3", "-t", "4s", "--heartbeat-interval", "0.3")
    )
    assert code == 0, out[-3000:]
    pings = rows(samples, "ping")
    assert len(pings) >= 15 and pings["ok"].all() and pings["ms"].median() < 50


def test_a_storm_connects_every_user_at_once(tmp_path):
    code, out, samples = run_locust(
        tmp_path,
        *("-u", "30", "-r", "30", "-t", "5s", "--storm", "1"),
        locustfile="handshakes.py",
    )
    assert code == 0, out[-3000:]
    connects = rows(samples, "connect")
    assert len(connects) >= 60 and connects["ok"].all()
    assert connects["inflight"].max() >= 20  # handshakes really overlapped
    assert rows(samples, "auth")["ok"].all()


def test_users_come_back_within_their_backoff_bound_after_a_restart(tmp_path):
    target = start_target([], secret=SECRET)
    port = target.port
    proc = run_locust(
        tmp_path,
        *("-u", "10", "-r", "10", "-t", "14s", "--think-time", "0.3"),
        *("--host", target.url, "--reconnect-base", "0.2", "--reconnect-max", "1"),
        wait=False,
    )
    time.sleep(5)
    target.stop()
    down_at = time.time()
    time.sleep(2)
    target = start_target(["--port", str(port)], secret=SECRET)
    up_at = time.time()
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        target.stop()
    assert "Traceback" not in out
    samples = load_samples(tmp_path / "run")
    drops = rows(samples, "session:disconnect")
    back = rows(samples, "session:reconnect")
    assert set(drops["user"]) == set(range(1, 11))  # every user saw the drop
    assert set(back["user"]) == set(range(1, 11))  # and came back
    downtime_ms = (up_at - down_at) * 1000
    assert (back["ms"] <= downtime_ms + 1000 + 1500).all(), back["ms"].describe()
    after = rows(samples, "turn:e2e")
    assert after.loc[after["ts"] > up_at, "ok"].sum() > 0  # chatting again after the restart
    refused = samples.loc[(samples["name"] == "connect") & ~samples["ok"], "failure"]
    assert set(refused) <= {"refused", "reset"}


def test_tokens_are_refreshed_before_expiry_with_no_auth_failures(tmp_path):
    code, out, samples = run_locust(
        tmp_path,
        *("-u", "50", "-r", "50", "-t", "15s", "--think-time", "0.5"),
        *("--token-lifetime", "3", "--target-args=--close-on-expiry"),
    )
    assert code == 0, out[-3000:]
    refreshes = rows(samples, "session:refresh")
    assert len(refreshes) >= 150 and refreshes["ok"].all()
    assert not (samples["failure"] == "auth_rejected").any()
    assert rows(samples, "session:disconnect").empty  # no expired-token closes
    assert not (samples["failure"] == "identity_mismatch").any()


def test_the_open_model_shows_the_latency_a_slow_server_makes_users_wait(tmp_path):
    code, out, samples = run_locust(
        tmp_path,
        *("-u", "5", "-r", "5", "-t", "8s", "--send-interval", "0.2"),
        *("--target-args", "--ttfe 0.3 --gap 0.02"),
    )
    assert code == 0, out[-3000:]
    e2e = rows(samples, "turn:e2e")["ms"]
    intended = rows(samples, "turn:e2e_intended").sort_values("ts")["ms"]
    assert len(intended) >= 20
    assert e2e.max() < 600  # each turn alone looks fine ...
    quarter = len(intended) // 4
    assert intended.iloc[-quarter:].median() > 2 * intended.iloc[:quarter].median()
    assert intended.iloc[-quarter:].median() > 1500  # ... but the backlog keeps growing


def test_the_open_model_agrees_with_the_closed_one_when_the_server_keeps_up(tmp_path):
    code, out, samples = run_locust(
        tmp_path, *("-u", "5", "-r", "5", "-t", "5s", "--send-interval", "0.5")
    )
    assert code == 0, out[-3000:]
    e2e = rows(samples, "turn:e2e")["ms"].median()
    intended = rows(samples, "turn:e2e_intended")["ms"].median()
    assert abs(intended - e2e) < 5
