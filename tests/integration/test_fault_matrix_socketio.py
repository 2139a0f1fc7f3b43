"""The fault matrix over Socket.IO: the reference target with ``--socketio`` injects the same
faults into Socket.IO packets, and wsload (profile ``tests/data/target_socketio.toml``: the
token in the CONNECT payload) classifies each as often as the target says it injected it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_fault_matrix import TURN_FAULTS, USERS, assert_matches, failures, run_against

PROFILE = str(Path(__file__).resolve().parents[1] / "data" / "target_socketio.toml")
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("knob", "counter", "ids", "name"),
    TURN_FAULTS,
)
def test_each_turn_fault_over_socketio_is_classified_as_often_as_injected(
    tmp_path, knob, counter, ids, name
):
    samples, counters = run_against(
        tmp_path,
        ["--socketio", knob, "0.2", "--thinking-steps", "1"],
        "--ws-profile",
        PROFILE,
    )
    turns = samples.loc[samples["name"] == "turn:e2e"]
    assert_matches(failures(samples, *ids, name=name), counters[counter])
    assert len(turns) > 50
    expected = ids if name == "turn:e2e" else ()
    other = turns.loc[~turns["ok"] & ~turns["failure"].isin(expected), "failure"]
    assert other.empty, other.value_counts()
    connects = samples.loc[samples["name"].isin(["connect", "auth"])]
    assert connects.loc[~connects["ok"], "failure"].isin(["disconnected_1006"]).all()


def test_hostile_packets_are_protocol_errors_and_never_crash_a_user(tmp_path):
    samples, counters = run_against(
        tmp_path, ["--socketio", "--hostile", "0.3"], "--ws-profile", PROFILE
    )
    hostile = counters["hostile_frames"]
    harmful = sum(n for kind, n in hostile.items() if kind != "heartbeat_burst")
    assert_matches(failures(samples, "protocol_error", name="session:frame"), harmful)
    turns = samples.loc[samples["name"] == "turn:e2e"]
    assert turns["ok"].mean() > 0.95


def test_a_server_whose_engineio_pings_stop_is_found_half_open(tmp_path):
    samples, counters = run_against(
        tmp_path,
        ["--socketio", "--socketio-ping", "0.3", "--half-open-after", "1"],
        "--ws-profile",
        PROFILE,
        "--turn-timeout",
        "30",
        "--event-timeout",
        "20",
        seconds=5,
    )
    assert counters["half_open"] >= USERS
    assert failures(samples, "pong_timeout", name="ping") >= USERS
    assert len(samples.loc[samples["name"] == "session:reconnect"]) >= USERS
