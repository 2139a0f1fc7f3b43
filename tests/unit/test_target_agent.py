"""Unit tests of the target's turn planning (sans-I/O) and per-connection policy."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsload.config.profile import load_profile
from wsload.target.agent import (
    ERROR_MESSAGE,
    HEARTBEAT_BURST,
    HOSTILE_KINDS,
    UNKNOWN_EVENT_TYPE,
    TurnKnobs,
    correlation,
    encode_plan,
    hostile_frames,
    plan_turn,
    render,
)
from wsload.target.config import TargetConfig
from wsload.target.policy import (
    ADMIT,
    CLOSE_1013,
    COUNT,
    DROP,
    DUPLICATE,
    HOSTILE,
    REFUSE_503,
    Policy,
    RateWindow,
    TurnPlan,
)


def types(plan: list) -> list[str]:
    return [event["type"] for _, event in plan]


def test_default_turn_follows_the_profile_grammar() -> None:
    plan = plan_turn(TurnKnobs())
    assert types(plan) == [
        "agent_started",
        "agent_thinking",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert load_profile().grammar.matches(types(plan))


def test_offsets_are_absolute_from_message_receipt() -> None:
    plan = plan_turn(TurnKnobs(ttfe_s=0.08, gap_s=0.025, thinking_steps=1, tools=1))
    offsets = [round(offset, 6) for offset, _ in plan]
    assert offsets == [0.08, 0.105, 0.13, 0.155, 0.18]


def test_tool_duration_sets_the_tool_span_only() -> None:
    plan = plan_turn(
        TurnKnobs(ttfe_s=0, gap_s=0.01, thinking_steps=0, tools=1, tool_duration_s=0.5)
    )
    offsets = dict(zip(types(plan), (o for o, _ in plan), strict=True))
    assert offsets["tool_completed"] - offsets["tool_executing"] == pytest.approx(0.5)
    assert offsets["agent_completed"] - offsets["tool_completed"] == pytest.approx(0.01)
    assert plan[2][1]["data"]["duration_ms"] == pytest.approx(500.0)


def test_zero_delays_make_an_instant_turn() -> None:
    knobs = TurnKnobs(ttfe_s=0, gap_s=0, tool_duration_s=0)
    assert knobs.instant
    assert all(offset == 0 for offset, _ in plan_turn(knobs))
    assert not TurnKnobs(ttfe_s=0, gap_s=0, tool_duration_s=0.1).instant


def test_jitter_is_seeded_and_bounded() -> None:
    knobs = TurnKnobs(ttfe_s=0.1, gap_s=0.1, thinking_steps=5, tools=3, jitter=0.5)
    a = plan_turn(knobs, random.Random(7))
    b = plan_turn(knobs, random.Random(7))
    assert a == b
    offsets = [0.0] + [o for o, _ in a]
    delays = [later - earlier for earlier, later in itertools.pairwise(offsets)]
    assert all(0.05 - 1e-9 <= d <= 0.15 + 1e-9 for d in delays)
    assert len(set(round(d, 9) for d in delays)) > 1


@given(
    ttfe=st.floats(0, 5),
    gap=st.floats(0, 5),
    thinking=st.integers(0, 6),
    tools=st.integers(0, 6),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_any_plan_is_grammatical_ordered_and_sequenced(
    ttfe: float, gap: float, thinking: int, tools: int, jitter: float, seed: int
) -> None:
    knobs = TurnKnobs(ttfe, gap, thinking, tools, None, jitter)
    plan = plan_turn(knobs, random.Random(seed))
    assert len(plan) == knobs.event_count
    offsets = [o for o, _ in plan]
    assert offsets == sorted(offsets) and offsets[0] >= 0
    assert [event["data"]["seq"] for _, event in plan] == list(range(len(plan)))
    assert types(plan)[0] == "agent_started" and types(plan)[-1] == "agent_completed"


def test_rendered_event_is_flat_json_with_all_correlation_fields() -> None:
    encoded = encode_plan(plan_turn(TurnKnobs()))
    ids = correlation('user "q"', "thread-1", "run-1")
    event = json.loads(render(encoded[0], 1234.5, ids))
    assert event == {
        "type": "agent_started",
        "timestamp": 1234.5,
        "user_id": 'user "q"',
        "thread_id": "thread-1",
        "run_id": "run-1",
        "data": {"agent_name": "wsload-agent", "seq": 0},
    }


def test_policy_reuses_one_encoded_turn_without_jitter_and_varies_with_it() -> None:
    steady = Policy(TargetConfig())
    assert steady.for_turn() is steady.for_turn()
    jittery = Policy(TargetConfig(jitter=0.5, seed=3))
    assert jittery.for_turn() != jittery.for_turn()
    first, second = (Policy(TargetConfig(jitter=0.5, seed=3)).for_turn() for _ in range(2))
    assert [e.offset for e in first.events] == [e.offset for e in second.events]


def test_policy_rejects_at_upgrade_only_when_enforcing() -> None:
    assert Policy(TargetConfig(reject_at_upgrade=403)).for_connection().reject_at_upgrade == 403
    demo = Policy(TargetConfig(reject_at_upgrade=403, auth_mode="demo"))
    assert demo.for_connection().reject_at_upgrade is None


# fault decisions (sans-I/O) --------------------------------------------------------------
def faulty(**knobs: object) -> Policy:
    return Policy(TargetConfig(seed=7, **knobs))


def plan_types(plan: TurnPlan) -> list[str]:
    return [json.loads(render(e, 0.0, ""))["type"] for e in plan.events]


def plan_seqs(plan: TurnPlan) -> list[int]:
    return [json.loads(render(e, 0.0, ""))["data"]["seq"] for e in plan.events]


def test_no_fault_knob_keeps_the_cached_plain_turn() -> None:
    policy = Policy(TargetConfig())
    assert policy.plain and policy.for_turn().after is None
    assert policy.for_turn() is policy.for_turn()
    assert not Policy(TargetConfig(leak_fraction=0.1)).plain
    assert not Policy(TargetConfig(capacity=2, overload_delay_s=0.1)).plain


def test_skip_removes_one_non_terminal_event_and_counts_it_at_the_next() -> None:
    for _ in range(20):
        plan = faulty(skip_events=1.0).for_turn()
        assert len(plan.events) == 5 and plan_types(plan)[-1] == "agent_completed"
        (index,) = plan.after
        assert plan.after[index] == ((COUNT, "skipped_events"),)
        assert plan_seqs(plan)[index] == index + 1  # the event after the gap


def test_reorder_swaps_adjacent_non_terminal_events_keeping_send_times() -> None:
    base = Policy(TargetConfig()).for_turn()
    plan = faulty(reorder_events=1.0).for_turn()
    assert [e.offset for e in plan.events] == [e.offset for e in base.events]
    seqs = plan_seqs(plan)
    (index,) = plan.after
    assert seqs[index - 1] == seqs[index] + 1 and seqs[-1] == len(seqs) - 1


def test_error_replaces_the_terminal_event_with_agent_error() -> None:
    plan = faulty(error_events=1.0).for_turn()
    assert plan.errored and plan_types(plan)[-1] == "agent_error"
    assert plan.after == {len(plan.events) - 1: ((COUNT, "error_events"),)}
    error = json.loads(render(plan.events[-1], 0.0, ""))
    assert error["error_message"] == ERROR_MESSAGE


def test_duplicate_hostile_and_drop_happen_after_a_non_terminal_event_in_order() -> None:
    policy = faulty(duplicate_events=1.0, hostile=1.0, drop_mid_turn=1.0)
    kinds = []
    rank = {DUPLICATE: 0, HOSTILE: 1, DROP: 2}
    for _ in range(len(HOSTILE_KINDS)):
        plan = policy.for_turn()
        assert max(plan.after) < len(plan.events) - 1
        actions = [a for index in sorted(plan.after) for a in plan.after[index]]
        assert sorted(a for a, _ in actions) == sorted(rank)  # one of each
        for at_index in plan.after.values():  # at one index: duplicate, hostile, then drop
            assert [rank[a] for a, _ in at_index] == sorted(rank[a] for a, _ in at_index)
        kinds += [arg for action, arg in actions if action == HOSTILE]
    assert kinds == list(HOSTILE_KINDS)  # round robin over the kinds


def test_fractions_hit_about_that_share_of_turns_and_a_seed_repeats_them() -> None:
    def after_sets(seed: int) -> list[object]:
        policy = Policy(TargetConfig(seed=seed, error_events=0.25))
        return [policy.for_turn().errored for _ in range(2000)]

    first = after_sets(1)
    assert 400 < sum(first) < 600
    assert after_sets(1) == first and after_sets(2) != first


@given(
    st.fixed_dictionaries(
        {},
        optional={
            name: st.sampled_from([0.0, 0.5, 1.0])
            for name in (
                "skip_events",
                "reorder_events",
                "duplicate_events",
                "error_events",
                "hostile",
                "drop_mid_turn",
            )
        },
    ),
    st.integers(0, 3),
    st.integers(0, 2),
    st.integers(0, 50),
)
def test_any_fault_mix_keeps_the_terminal_last_and_actions_in_range(
    knobs: dict, thinking: int, tools: int, seed: int
) -> None:
    policy = Policy(TargetConfig(seed=seed, thinking_steps=thinking, tools=tools, **knobs))
    for _ in range(5):
        plan = policy.for_turn()
        types = plan_types(plan)
        assert types[-1] in ("agent_completed", "agent_error")
        assert types.count("agent_completed") + types.count("agent_error") == 1
        for index, actions in (plan.after or {}).items():
            assert 0 <= index < len(plan.events)
            if any(a in (DUPLICATE, HOSTILE, DROP) for a, _ in actions):
                assert index < len(plan.events) - 1


def test_overload_grows_each_delay_linearly_past_capacity() -> None:
    policy = Policy(TargetConfig(capacity=10, overload_delay_s=0.5))
    assert [policy.overload_s(n) for n in (0, 10)] == [0.0, 0.0]
    assert policy.overload_s(15) == pytest.approx(0.25)
    assert policy.overload_s(20) == pytest.approx(0.5)


def test_rate_window_allows_n_messages_in_any_minute() -> None:
    window = RateWindow(3, 60.0)
    assert [window.allow(t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert window.retry_after(3.0) == pytest.approx(57.0)
    assert window.allow(60.5) and not window.allow(60.6)
    assert Policy(TargetConfig()).rate_window() is None


def test_connection_limits_and_expiry_decisions() -> None:
    assert Policy(TargetConfig()).admit(10_000) == ADMIT
    assert Policy(TargetConfig(max_connections=2)).admit(2) == REFUSE_503
    assert Policy(TargetConfig(max_connections=2, limit_close=True)).admit(2) == CLOSE_1013
    limited = Policy(TargetConfig(connections_per_user=2))
    assert limited.admit_user(1) and not limited.admit_user(2)
    assert Policy(TargetConfig(connections_per_user=0)).admit_user(10_000)
    assert Policy(TargetConfig()).expiry_delay(100.0, 40.0) is None
    expiring = Policy(TargetConfig(close_on_expiry=True))
    assert expiring.expiry_delay(100.0, 40.0) == 60.0
    assert expiring.expiry_delay(None, 40.0) is None


def test_connection_fractions_pick_connections_with_the_seed() -> None:
    config = TargetConfig(seed=3, half_open_after_s=5.0, half_open_fraction=0.5)
    policy = Policy(config)
    plans = [policy.for_connection().half_open_after_s for _ in range(400)]
    assert set(plans) == {0.0, 5.0} and 150 < plans.count(5.0) < 250
    slow = Policy(TargetConfig(slow_handshake_s=2.0))
    assert slow.for_connection() is slow.for_connection()
    assert slow.for_connection().slow_handshake_s == 2.0


def test_hostile_frames_are_what_their_kind_says() -> None:
    ids = correlation("u", "t", "r")
    (malformed,) = hostile_frames("malformed_json", 1.0, ids)
    with pytest.raises(ValueError):
        json.loads(malformed)
    (binary,) = hostile_frames("binary", 1.0, ids)
    assert isinstance(binary, bytes)
    with pytest.raises(UnicodeDecodeError):
        binary.decode("utf-8")
    (array,) = hostile_frames("json_array", 1.0, ids)
    assert isinstance(json.loads(array), list)
    (unknown,) = hostile_frames("unknown_type", 1.0, ids)
    assert json.loads(unknown)["type"] == UNKNOWN_EVENT_TYPE
    assert json.loads(unknown)["user_id"] == "u"
    (untyped,) = hostile_frames("missing_type", 1.0, ids)
    assert "type" not in json.loads(untyped) and json.loads(untyped)["run_id"] == "r"
    burst = hostile_frames("heartbeat_burst", 1.0, ids)
    assert len(burst) == HEARTBEAT_BURST
    assert all(json.loads(f)["type"] == "heartbeat" and len(f) < 40 for f in burst)
