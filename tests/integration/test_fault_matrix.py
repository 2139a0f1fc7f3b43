"""Every server fault the target injects, classified by the client, counted against the target.

Each case runs a real headless Locust against a reference target with one fault knob on
(seeded), then compares what the users recorded with what the target says it injected
(``GET /stats``). Turns still in flight when the run stops may be injected but never
reported, so the client may see up to one fewer per user, never more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from wsload.run.summary import load_samples
from wsload.target import start_target

REPO = Path(__file__).resolve().parents[2]
SECRET = "fault-matrix-secret-0123456789abcdefghij"
USERS = 10
pytestmark = pytest.mark.slow


def run_against(tmp_path: Path, knobs: list[str], *extra: str, seconds: int = 4):
    target = start_target(["--seed", "7", *knobs], secret=SECRET)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
            + ["-u", str(USERS), "-r", str(USERS), "-t", f"{seconds}s", "--host", target.url]
            + ["--think-time", "0.05", "--probe-users", "0", "--heartbeat-interval", "0"]
            + ["--reconnect-base", "0.1", "--reconnect-max", "0.5"]
            + ["--results", str(tmp_path / "run"), "--only-summary", *extra],
            cwd=REPO,
            env={**os.environ, "JWT_SECRET_KEY": SECRET},
            capture_output=True,
            text=True,
            timeout=120,
        )
        with urllib.request.urlopen(f"{target.http_url}/stats", timeout=5) as answer:
            counters = json.loads(answer.read())["counters"]
    finally:
        target.stop()
    assert "Traceback" not in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]
    samples = load_samples(tmp_path / "run")
    return samples.loc[samples["kind"] != "health"], counters


def failures(samples, *ids: str, name: str | None = None) -> int:
    rows = samples.loc[samples["failure"].isin(ids)]
    if name is not None:
        rows = rows.loc[rows["name"] == name]
    return len(rows)


def assert_matches(client: int, injected: int) -> None:
    assert injected > 0, "the knob injected nothing: the case proves nothing"
    assert injected - USERS <= client <= injected, (client, injected)


# The turn faults every framing must classify: (knob, target counter, failure ids, stats name).
TURN_FAULTS = [
    ("--skip-events", "skipped_events", ("sequence_missing",), "turn:e2e"),
    ("--duplicate-events", "duplicated_events", ("sequence_duplicate",), "turn:e2e"),
    (
        "--reorder-events",
        "reordered_events",
        ("sequence_order", "sequence_missing"),
        "turn:e2e",
    ),
    ("--error-events", "error_events", ("agent_error",), "turn:e2e"),
    ("--drop-mid-turn", "dropped_connections", ("disconnected_1006",), "turn:e2e"),
    # the copy comes after the turn has ended: a session sample, the turn stays ok
    (
        "--duplicate-terminal",
        "duplicated_terminal_events",
        ("sequence_duplicate",),
        "session:duplicate",
    ),
]


@pytest.mark.parametrize(
    ("knob", "counter", "ids", "name"),
    TURN_FAULTS,
)
def test_each_turn_fault_is_classified_as_often_as_it_was_injected(
    tmp_path, knob, counter, ids, name
):
    # One thinking step: with two, a turn missing one of them still matches
    # `agent_thinking+`, and no grammar can tell (PROTOCOL.md gives events no sequence number).
    samples, counters = run_against(tmp_path, [knob, "0.2", "--thinking-steps", "1"])
    turns = samples.loc[samples["name"] == "turn:e2e"]
    assert_matches(failures(samples, *ids, name=name), counters[counter])
    assert len(turns) > 100
    expected = ids if name == "turn:e2e" else ()  # a copy after the turn leaves it ok
    other = turns.loc[~turns["ok"] & ~turns["failure"].isin(expected), "failure"]
    assert other.empty, other.value_counts()  # nothing misclassified as something else


def test_hostile_frames_are_protocol_errors_and_never_crash_a_user(tmp_path):
    samples, counters = run_against(tmp_path, ["--hostile", "0.3"])
    hostile = counters["hostile_frames"]
    harmful = sum(n for kind, n in hostile.items() if kind != "heartbeat_burst")
    assert_matches(failures(samples, "protocol_error", name="session:frame"), harmful)
    assert hostile.get("heartbeat_burst", 0) > 0  # 1000 valid frames: no failure, no crash
    turns = samples.loc[samples["name"] == "turn:e2e"]
    assert turns["ok"].mean() > 0.95  # junk between events does not break the turns


def test_leaked_events_show_as_foreign_events_at_the_leak_rate(tmp_path):
    # the security gate would stop the run at the first foreign event: measure the whole run
    samples, counters = run_against(
        tmp_path, ["--leak-fraction", "0.01"], "--no-security-gate", seconds=6
    )
    leaked = counters["leaked_events"]
    seen = failures(samples, "foreign_event")
    assert leaked > 10
    assert abs(seen - leaked) <= max(3, 0.2 * leaked), (seen, leaked)


def test_expired_sessions_are_closed_1008_when_the_user_does_not_refresh(tmp_path):
    samples, counters = run_against(
        tmp_path,
        ["--close-on-expiry"],
        "--token-lifetime",
        "2",
        "--ws-profile",
        str(REPO / "tests" / "data" / "no_refresh.toml"),
    )
    assert_matches(
        failures(samples, "disconnected_1008", name="session:disconnect"),
        counters["expired_closed"],
    )


@pytest.mark.parametrize(
    ("knobs", "extra", "expected"),
    [
        (["--not-ready"], [], {"closed_1011"}),
        (["--slow-handshake", "3"], ["--connect-timeout", "1"], {"handshake_timeout"}),
        (["--max-connections", "5"], [], {"http_503"}),
        (["--max-connections", "5", "--limit-close"], [], {"closed_1013"}),
    ],
    ids=["not-ready", "slow-handshake", "limit-503", "limit-1013"],
)
def test_connection_faults_get_their_taxonomy_ids(tmp_path, knobs, extra, expected):
    samples, _ = run_against(tmp_path, knobs, *extra, seconds=3)
    failed = set(samples.loc[~samples["ok"] & samples["name"].isin(["connect", "auth"]), "failure"])
    assert failed == expected


def test_a_half_open_connection_is_found_by_the_heartbeat(tmp_path):
    samples, counters = run_against(
        tmp_path,
        ["--half-open-after", "1"],
        "--heartbeat-interval",
        "0.3",
        "--pong-timeout",
        "0.5",
        "--turn-timeout",
        "30",
        "--event-timeout",
        "20",
        seconds=5,
    )
    assert counters["half_open"] >= USERS
    assert failures(samples, "pong_timeout", name="ping") >= USERS
    assert len(samples.loc[samples["name"] == "session:reconnect"]) >= USERS
