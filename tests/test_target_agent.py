"""Unit tests of the target's turn planning (sans-I/O) and per-connection policy."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsload.profile import load_profile
from wsload.target.agent import TurnKnobs, correlation, encode_plan, plan_turn, render
from wsload.target.config import TargetConfig
from wsload.target.policy import Policy


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
    assert [e.offset for e in first] == [e.offset for e in second]


def test_policy_rejects_at_upgrade_only_when_enforcing() -> None:
    assert Policy(TargetConfig(reject_at_upgrade=403)).for_connection().reject_at_upgrade == 403
    demo = Policy(TargetConfig(reject_at_upgrade=403, auth_mode="demo"))
    assert demo.for_connection().reject_at_upgrade is None
