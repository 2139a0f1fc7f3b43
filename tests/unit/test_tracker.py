"""The turn tracker's timings and verdicts, exhaustively over generated turns."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload import taxonomy
from wsload.config.profile import load_profile
from wsload.protocol.grammar import Grammar, GrammarError
from wsload.protocol.tracker import FinishedTurns, TurnTracker, span_name

PROFILE = load_profile()
GRAMMAR = PROFILE.grammar
USER, THREAD, RUN = "u-1", "t-1", "r-1"
SENT = 100.0


def tracker(**overrides) -> TurnTracker:
    kwargs = dict(sent_at=SENT, user_id=USER, thread_id=THREAD, timeout_s=60.0, event_timeout_s=5.0)
    kwargs.update(overrides)
    return TurnTracker(PROFILE.events, GRAMMAR, **kwargs)


def event(name: str, seq: int, **fields) -> dict:
    base = {"type": name, "user_id": USER, "thread_id": THREAD, "run_id": RUN, "seq": seq}
    base.update(fields)
    return base


def run(events: list[dict], times: list[float], tr: TurnTracker | None = None):
    tr = tr or tracker()
    for ev, at in zip(events, times, strict=True):
        if tr.feed(ev, at, json.dumps(ev, sort_keys=True)):
            break
    return tr


def valid_names(thinking: int, tools: int) -> list[str]:
    names = ["agent_started"] + ["agent_thinking"] * thinking
    names += ["tool_executing", "tool_completed"] * tools
    return [*names, "agent_completed"]


valid_turns = st.builds(valid_names, st.integers(1, 4), st.integers(0, 3))
gaps = st.floats(min_value=0.0001, max_value=2.0, allow_nan=False)


def timed(names: list[str], data) -> tuple[list[dict], list[float]]:
    deltas = data.draw(st.lists(gaps, min_size=len(names), max_size=len(names)))
    times, now = [], SENT
    for d in deltas:
        now += d
        times.append(now)
    return [event(n, i) for i, n in enumerate(names)], times


@given(valid_turns, st.data())
def test_valid_turn_is_ok_with_exact_timings(names, data):
    events, times = timed(names, data)
    result = run(events, times).result()
    assert result.ok and result.failures == []
    assert result.ttfe_ms == pytest.approx((times[0] - SENT) * 1000)
    assert result.e2e_ms == pytest.approx((times[-1] - SENT) * 1000)
    assert result.events == len(names)
    assert result.gaps_ms == pytest.approx([(b - a) * 1000 for a, b in itertools.pairwise(times)])
    assert result.first_ms["agent_completed"] == pytest.approx(result.e2e_ms)
    assert len(result.spans_ms) == names.count("tool_executing")
    for span, ms in result.spans_ms:
        assert span == "tool" and ms > 0
    assert result.run_id == RUN and result.terminal == "agent_completed"


@given(valid_turns, st.data())
def test_foreign_events_are_flagged_and_leave_the_turn_measured(names, data):
    events, times = timed(names, data)
    clean = run(events, times).result()
    mixed_events, mixed_times = list(events), list(times)
    count = data.draw(st.integers(1, 3))
    for k in range(count):
        pos = data.draw(st.integers(0, len(mixed_events) - 1))
        field = data.draw(st.sampled_from(["user_id", "thread_id", "run_id"]))
        first_real = next(i for i, e in enumerate(mixed_events) if e["seq"] < 1000)
        if field == "run_id" and pos <= first_real:
            field = "user_id"  # a turn learns its run id from its first own event
        intruder = event(data.draw(st.sampled_from(names)), 1000 + k, **{field: "someone-else"})
        mixed_events.insert(pos, intruder)
        mixed_times.insert(pos, mixed_times[pos] - 1e-6 if pos else SENT + 1e-6)
    result = run(mixed_events, mixed_times).result()
    assert [f for f, _ in result.failures] == [taxonomy.FOREIGN_EVENT] * count
    assert result.e2e_ms == pytest.approx(clean.e2e_ms)
    assert result.events == clean.events


@given(valid_turns, st.data())
def test_a_frame_received_twice_is_a_duplicate(names, data):
    events, times = timed(names, data)
    pos = data.draw(st.integers(0, len(events) - 2))
    events.insert(pos + 1, dict(events[pos]))
    times.insert(pos + 1, times[pos])
    result = run(events, times).result()
    assert [f for f, _ in result.failures] == [taxonomy.SEQUENCE_DUPLICATE]
    assert result.terminal == "agent_completed"


@given(valid_turns, st.data())
def test_a_dropped_event_is_missing_unless_the_rest_is_still_valid(names, data):
    pos = data.draw(st.integers(0, len(names) - 2))
    dropped = names[:pos] + names[pos + 1 :]
    events, times = timed(dropped, data)
    result = run(events, times).result()
    if GRAMMAR.matches(dropped):
        assert result.ok
    else:
        assert [f for f, _ in result.failures] == [taxonomy.SEQUENCE_MISSING]


@given(valid_turns, st.data())
def test_swapped_events_are_order_or_missing_never_duplicate(names, data):
    pos = data.draw(st.integers(0, len(names) - 2))
    swapped = list(names)
    swapped[pos], swapped[pos + 1] = swapped[pos + 1], swapped[pos]
    events, times = timed(swapped, data)
    result = run(events, times).result()
    ids = {f for f, _ in result.failures}
    if GRAMMAR.matches(result.names):  # an early terminal can end a valid, shorter turn
        assert result.ok
    else:
        assert ids and ids <= {taxonomy.SEQUENCE_ORDER, taxonomy.SEQUENCE_MISSING}


@settings(max_examples=300)
@given(st.lists(st.sampled_from(sorted(GRAMMAR.names)), max_size=12), st.data())
def test_any_sequence_is_ok_exactly_when_the_grammar_accepts_it(names, data):
    events, times = timed(names, data)
    tr = run(events, times)
    consumed = tr.result().names
    if not tr.done:
        assert not tr.result().ok
        return
    assert tr.result().ok == GRAMMAR.matches(consumed)


def test_an_error_event_ends_the_turn_as_agent_error():
    tr = tracker()
    tr.feed(event("agent_started", 0), SENT + 0.1)
    assert tr.feed(event("agent_error", 1, error="tool crashed"), SENT + 0.2)
    result = tr.result()
    assert result.failure == taxonomy.AGENT_ERROR and "tool crashed" in result.failures[0][1]
    assert result.e2e_ms == pytest.approx(200)


def test_silence_past_the_event_timeout_expires_the_turn():
    tr = tracker(event_timeout_s=0.5)
    tr.feed(event("agent_started", 0), SENT + 0.1)
    assert tr.deadline() == pytest.approx(SENT + 0.6)
    result = tr.expire(SENT + 0.7)
    assert result.failure == taxonomy.EVENT_TIMEOUT and "agent_thinking" in result.failures[0][1]
    assert result.e2e_ms is None and result.elapsed_ms == pytest.approx(700)


def test_the_whole_turn_timeout_bounds_the_deadline():
    tr = tracker(timeout_s=1.0, event_timeout_s=5.0)
    assert tr.deadline() == pytest.approx(SENT + 1.0)


def test_a_disconnect_mid_turn_names_the_close_code():
    tr = tracker()
    tr.feed(event("agent_started", 0), SENT + 0.1)
    assert tr.disconnected(1011, SENT + 0.2).failure == "disconnected_1011"
    assert tracker().disconnected(None, SENT).failure == "disconnected_1006"


def test_ignored_and_optional_events_do_not_break_the_grammar():
    tr = tracker()
    names = valid_names(1, 0)
    for i, name in enumerate(names[:-1]):
        tr.feed(event(name, i), SENT + 0.1 * (i + 1))
        tr.feed({"type": "heartbeat"}, SENT + 0.1 * (i + 1))
        tr.feed(event("progress_update", 100 + i), SENT + 0.1 * (i + 1) + 0.01)
    tr.feed(event("agent_completed", 99), SENT + 1)
    result = tr.result()
    assert result.ok and "heartbeat" not in result.names and "progress_update" in result.first_ms


def test_a_second_agent_started_is_a_duplicate_even_with_new_content():
    events = [event(n, i) for i, n in enumerate(valid_names(1, 0))]
    events.insert(1, event("agent_started", 77))
    result = run(events, [SENT + i for i in range(1, len(events) + 1)]).result()
    assert result.failure == taxonomy.SEQUENCE_DUPLICATE


def test_span_names_come_from_the_common_prefix():
    assert span_name("tool_executing", "tool_completed") == "tool"
    assert span_name("begin", "end") == "begin"


@pytest.mark.parametrize(
    ("id_field", "expected_ms"), [("tool_name", [1000, 5000]), ("", [2000, 4000])]
)
def test_concurrent_spans_pair_by_their_id_field_else_in_order(id_field, expected_ms):
    sequence = "agent_started (tool_executing | tool_completed)* agent_completed"
    events = dataclasses.replace(PROFILE.events, sequence=sequence, span_id_field=id_field)
    tr = TurnTracker(
        events,
        Grammar(sequence),
        sent_at=SENT,
        user_id=USER,
        thread_id=THREAD,
        timeout_s=60.0,
        event_timeout_s=5.0,
    )
    turn = [
        ("agent_started", None, 1),
        ("tool_executing", "a", 2),
        ("tool_executing", "b", 3),
        ("tool_completed", "b", 4),  # b took 1 s
        ("tool_completed", "a", 7),  # a took 5 s
        ("agent_completed", None, 8),
    ]
    frames = [event(n, i, tool_name=t) for i, (n, t, _) in enumerate(turn)]
    result = run(frames, [SENT + at for *_, at in turn], tr).result()
    assert result.ok
    assert [(name, round(ms)) for name, ms in result.spans_ms] == [
        ("tool", ms) for ms in expected_ms
    ]


@pytest.mark.parametrize(
    ("text", "position"),
    [("a (b", 4), ("a | | b", 4), ("a $ b", 2), ("", 0), ("a )", 2), ("+ a", 0)],
)
def test_bad_grammar_points_at_the_character(text, position):
    with pytest.raises(GrammarError) as info:
        Grammar(text)
    assert info.value.position == position


def test_grammar_alternatives_and_optionals():
    g = Grammar("start (a | b c)? end")
    assert g.matches(["start", "end"]) and g.matches(["start", "b", "c", "end"])
    assert not g.matches(["start", "b", "end"]) and not g.matches(["start", "a", "c", "end"])
    assert g.repeatable("a") is False and Grammar("x y* z").repeatable("y")


def test_identical_frames_are_allowed_when_the_profile_says_events_repeat_verbatim():
    import dataclasses

    events = dataclasses.replace(PROFILE.events, frames_are_unique=False)
    tr = TurnTracker(
        events,
        GRAMMAR,
        sent_at=SENT,
        user_id=USER,
        thread_id=THREAD,
        timeout_s=9,
        event_timeout_s=9,
    )
    names = valid_names(2, 0)
    for i, name in enumerate(names):
        ev = {"type": name, "user_id": USER}
        tr.feed(ev, SENT + i + 1, json.dumps(ev))
    assert tr.result().ok


# times from two clocks ------------------------------------------------------------------
@given(valid_turns, st.data())
def test_no_duration_is_negative_whatever_order_the_times_come_in(names, data):
    """The send is a perf_counter reading, arrivals are kernel stamps: they may cross."""
    stamp = st.floats(SENT - 1.0, SENT + 1.0)
    fed = data.draw(st.integers(0, len(names)))
    times = data.draw(st.lists(stamp, min_size=fed, max_size=fed))
    tr = run([event(n, i) for i, n in enumerate(names[:fed])], times)
    ending, at = data.draw(st.sampled_from(["expire", "disconnect"])), data.draw(stamp)
    result = tr.expire(at) if ending == "expire" else tr.disconnected(1006, at)
    assert result.ttfe_ms is None or result.ttfe_ms >= 0
    assert result.e2e_ms is None or result.e2e_ms >= 0
    assert result.elapsed_ms >= 0 and all(ms >= 0 for ms in result.first_ms.values())
    assert all(ms >= 0 for ms in result.gaps_ms)
    assert all(ms >= 0 for _, ms in result.spans_ms)
    assert result.ok == (fed == len(names))


def test_an_event_stamped_before_the_send_counts_as_arriving_at_the_send():
    tr = tracker()
    tr.feed(event("agent_started", 0), SENT - 0.00002)
    tr.feed(event("agent_thinking", 1), SENT + 0.010)
    tr.feed(event("agent_completed", 2), SENT + 0.009)  # jitter: before the event before
    result = tr.result()
    assert result.ok and result.ttfe_ms == 0.0
    assert result.gaps_ms == pytest.approx([10.0, 0.0])
    assert result.e2e_ms == pytest.approx(10.0)


# duplicates of finished turns -----------------------------------------------------------
def finished_turn(run_id: str | None = RUN, events_config=PROFILE.events) -> TurnTracker:
    tr = TurnTracker(
        events_config,
        GRAMMAR,
        sent_at=SENT,
        user_id=USER,
        thread_id=THREAD,
        timeout_s=60.0,
        event_timeout_s=5.0,
    )
    for i, name in enumerate(valid_names(1, 0)):
        ev = event(name, i, run_id=run_id) if run_id else without_run(event(name, i))
        tr.feed(ev, SENT + 0.1 * (i + 1), json.dumps(ev, sort_keys=True))
    assert tr.done and tr.result().ok
    return tr


def without_run(ev: dict) -> dict:
    ev = dict(ev)
    ev.pop("run_id")
    return ev


def test_an_event_of_a_finished_turn_is_a_duplicate_by_its_run_id():
    finished = FinishedTurns(PROFILE.events, GRAMMAR)
    terminal = event("agent_completed", 2)
    assert finished.duplicate(terminal, json.dumps(terminal, sort_keys=True)) is None
    finished.add(finished_turn())
    detail = finished.duplicate(terminal, json.dumps(terminal, sort_keys=True))
    assert detail == f"agent_completed after its turn ended (run {RUN})"
    # another frame of that run, even one never seen, is still of a turn that has ended
    assert finished.duplicate(event("agent_thinking", 9), None) is not None
    # the next turn's events are not: a new run id
    assert finished.duplicate(event("agent_started", 0, run_id="r-2"), None) is None


def test_the_run_ids_of_the_last_sixteen_turns_are_kept():
    finished = FinishedTurns(PROFILE.events, GRAMMAR)
    runs = [f"r-{i}" for i in range(17)]
    for run_id in runs:
        finished.add(finished_turn(run_id))
    assert finished.duplicate(event("agent_completed", 2, run_id=runs[0]), None) is None
    for run_id in runs[1:]:
        assert finished.duplicate(event("agent_completed", 2, run_id=run_id), None) is not None


def test_without_run_ids_a_frame_of_the_last_turn_sent_again_is_a_duplicate():
    finished = FinishedTurns(PROFILE.events, GRAMMAR)
    finished.add(finished_turn(run_id=None))
    terminal = without_run(event("agent_completed", 2))
    raw = json.dumps(terminal, sort_keys=True)
    assert finished.duplicate(terminal, raw) == (
        "agent_completed after its turn ended (the same frame again)"
    )
    other = without_run(event("agent_completed", 3))  # a new frame, as the next turn's would be
    assert finished.duplicate(other, json.dumps(other, sort_keys=True)) is None
    assert finished.duplicate(terminal, None) is None


def test_identical_frames_are_no_evidence_when_the_profile_says_frames_repeat():
    import dataclasses

    events = dataclasses.replace(PROFILE.events, frames_are_unique=False)
    finished = FinishedTurns(events, GRAMMAR)
    finished.add(finished_turn(run_id=None, events_config=events))
    terminal = without_run(event("agent_completed", 2))
    assert finished.duplicate(terminal, json.dumps(terminal, sort_keys=True)) is None


def test_an_event_of_someone_else_names_the_turn_even_after_another_failure():
    """The security gate counts foreign_event on turn:e2e: an earlier failure must not hide it."""
    profile = load_profile()
    tracker = TurnTracker(
        profile.events,
        profile.grammar,
        sent_at=0.0,
        user_id="u1",
        thread_id="t1",
        timeout_s=60,
        event_timeout_s=30,
    )
    base = {"user_id": "u1", "thread_id": "t1", "run_id": "r1"}
    tracker.feed({"type": "agent_started", **base}, 0.01)
    tracker.feed({"type": "agent_started", **base}, 0.02)  # sequence_duplicate first
    tracker.feed({"type": "agent_thinking", **base, "user_id": "u2"}, 0.03)  # then a leak
    tracker.feed({"type": "agent_thinking", **base}, 0.04)
    tracker.feed({"type": "agent_completed", **base}, 0.05)
    result = tracker.result()
    assert [f for f, _ in result.failures][:2] == ["sequence_duplicate", "foreign_event"]
    assert result.failure == "foreign_event"
