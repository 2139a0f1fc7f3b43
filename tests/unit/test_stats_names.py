"""Gate names are checked against the profile before any load starts."""

from __future__ import annotations

import pytest

from wsload.config.profile import load_profile
from wsload.errors import ConfigError
from wsload.gate import build_config
from wsload.gate.names import check_gate_names, stats_names


@pytest.fixture(scope="module")
def default():
    return load_profile()


def test_the_names_follow_the_profiles_events_spans_and_probes(default):
    names = stats_names(default)
    assert {"connect", "auth", "turn:ttfe", "turn:e2e", "turn:gap", "turn:tool"} <= names
    assert {f"turn:{e}" for e in default.grammar.names} <= names
    assert {"probe:no_token", "conformance:bad_websocket_key", "session:isolation"} <= names
    other = stats_names(load_profile("tests/data/other_backend.toml"))
    assert "turn:agent_started" not in other and "turn:e2e" in other


@pytest.mark.parametrize(
    ("threshold", "hint"),
    [
        ("e2e p95 < 5s", "did you mean 'turn:e2e'?"),
        ("turn:e2ee p95 < 5s", "did you mean 'turn:e2e'?"),
        ("turn:agent_complete p95 < 1s", "did you mean 'turn:agent_completed'?"),
        ("probe:no_tokn.failures == 0", "did you mean 'probe:no_token'?"),
        ("conect.refused == 0", "did you mean 'connect'?"),
    ],
)
def test_a_name_no_run_can_produce_is_refused_with_a_did_you_mean(default, threshold, hint):
    with pytest.raises(ConfigError) as caught:
        check_gate_names(build_config(thresholds=[threshold]), default)
    message = str(caught.value)
    assert hint in message and "agent-chat" in message and "turn:e2e" in message


def test_goodput_limits_are_checked_too(default):
    with pytest.raises(ConfigError, match="goodput limit 'turn:gapp'"):
        check_gate_names(build_config(goodput_limits=["turn:gapp=100ms"]), default)


def test_groups_failure_ids_and_the_users_own_request_names_pass(default):
    config = build_config(
        thresholds=[
            "turn:e2e p95 < 5s",
            "turn.rate >= 1/s",
            "probe.auth_not_enforced == 0",
            "conformance.failures == 0",
            "refused.count == 0",
            "goodput >= 95%",
            "all.failure_rate < 5%",
            "/api/health p95 < 1s",
        ]
    )
    check_gate_names(config, default)
