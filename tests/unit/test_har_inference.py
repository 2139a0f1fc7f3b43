"""The parts of `wsload har` that infer from recorded turns: grammar, spans, streamed text."""

from __future__ import annotations

import pytest

from wsload.har.chat_infer import _per_message_ids
from wsload.har.fields import text_path
from wsload.har.grammar_infer import accepts, infer_sequence
from wsload.har.messages import choose_client_field, choose_type_field
from wsload.har.socketio import parse_packet
from wsload.har.spans import infer_spans, streamed_events

A = ["agent_started", "agent_thinking", "agent_thinking", "tool_executing", "tool_completed"]


@pytest.mark.parametrize(
    ("turns", "grammar"),
    [
        ([["start", "delta", "delta", "done"]], "start delta+ done"),
        ([["start", "done"], ["start", "note", "done"]], "start note? done"),
        (
            [[*A, "agent_completed"], [*A, "tool_executing", "tool_completed", "agent_completed"]],
            "agent_started agent_thinking+ (tool_executing tool_completed)+ agent_completed",
        ),
        (
            [[*A[:3], "agent_completed"], [*A, "agent_completed"]],
            "agent_started agent_thinking+ tool_executing? tool_completed? agent_completed",
        ),
    ],
)
def test_the_grammar_accepts_every_recorded_turn_and_generalises_repeats(turns, grammar):
    assert infer_sequence(turns) == grammar
    assert all(accepts(grammar, turn) for turn in turns)


def test_turns_that_no_alignment_can_express_become_alternatives():
    turns = [["a", "b", "end"], ["b", "a", "end"]]
    grammar = infer_sequence(turns)
    assert all(accepts(grammar, turn) for turn in turns)


def test_a_span_is_a_start_end_pair_inside_the_turn_never_the_turn_itself():
    turns = [["run.start", "tool.start", "tool.end", "run.end"], ["run.start", "run.end"]]
    assert infer_spans(turns) == [("tool.start", "tool.end")]
    assert infer_spans([["agent_started", "agent_completed"]]) == []


def test_streamed_events_are_repeated_named_events_with_changing_text():
    turn = [
        ("stream_token", {"id": "r1", "token": "Hel"}),
        ("stream_token", {"id": "r1", "token": "lo"}),
        ("agent_thinking", {"thought": "one"}),
        ("agent_thinking", {"thought": "two"}),
    ]
    assert streamed_events([turn]) == (["stream_token"], "token")


@pytest.mark.parametrize(
    ("text", "kind", "namespace", "data"),
    [
        (
            '42["client_message",{"content":"hi"}]',
            "event",
            "/",
            ["client_message", {"content": "hi"}],
        ),
        ('40/chat,{"token":"x"}', "connect", "/chat", {"token": "x"}),
        ('4217["ask",1]', "event", "/", ["ask", 1]),
        ("2", "ping", "/", None),
        ('0{"sid":"s"}', "open", "/", {"sid": "s"}),
    ],
)
def test_socketio_packets_are_read_with_namespace_ack_id_and_payload(text, kind, namespace, data):
    packet = parse_packet(text, sent=True, time=0.0, polling=False)
    assert (packet.kind, packet.namespace, packet.data) == (kind, namespace, data)


@pytest.mark.parametrize(
    ("frames", "field"),
    [
        ([{"jsonrpc": "2.0", "method": "delta"}, {"jsonrpc": "2.0", "method": "done"}], "method"),
        ([{"type": "a", "user_id": "u-1"}, {"type": "b", "user_id": "u-1"}], "type"),
        (
            [
                {"event": "start", "id": "9f1c2a3b4c5d6e7f8a9b"},
                {"event": "end", "id": "0a1b2c3d4e5f60718293"},
            ],
            "event",
        ),
    ],
)
def test_the_type_field_names_kinds_of_messages_not_constants_or_ids(frames, field):
    assert choose_type_field(frames) == field


def test_the_chat_text_is_the_longest_changing_string_but_never_an_id():
    bodies = [
        {"id": "3f2a9c1e-0b7d-4e55-9a41-2c6f0e8b7d11", "text": "hi", "thread": "t-1"},
        {"id": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "text": "and you?", "thread": "t-1"},
    ]
    assert text_path(bodies, {"thread"}) == "text"


def test_the_pages_messages_are_named_by_their_constant_kind_not_by_their_text():
    sent = [
        {"action": "ask", "text": "hi", "conversation": "c-1"},
        {"action": "ask", "text": "why?", "conversation": "c-1"},
        {"action": "ask", "text": "ok", "conversation": "c-1"},
    ]
    assert choose_client_field(sent) == "action"


def test_an_id_that_changes_with_every_chat_message_becomes_a_fresh_message_id():
    bodies = [
        {"id": "3f2a9c1e-0b7d-4e55-9a41-2c6f0e8b7d11", "at": "2026-01-01T10:00:00Z", "t": "a"},
        {"id": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "at": "2026-01-01T10:00:09Z", "t": "b"},
    ]
    assert _per_message_ids(bodies, {"t"}) == ["id"]  # a timestamp changes too: kept as is


def test_of_nested_spans_the_innermost_is_timed():
    turn = ["task_start", "new_message:run", "new_message:tool", "update_message:tool"]
    turn += ["new_message:answer", "update_message:run", "task_end"]
    assert infer_spans([turn]) == [("new_message:tool", "update_message:tool")]


def test_an_event_trailing_the_answer_that_arrives_after_the_next_message_is_no_part_of_it():
    from wsload.har.messages import Message
    from wsload.har.turns import Turn, late_trailers

    def event(name: str) -> Message:
        return Message(False, 0.0, name, {"event": name}, name)

    chat = Message(True, 0.0, "user_message", {}, "")
    # clear_ask follows task_end; a quick next message makes it open the next turn instead
    quick = Turn(chat, [event("clear_ask"), event("task_start"), event("task_end")], True)
    slow = Turn(chat, [event("task_start"), event("task_end")], True)
    outside = [event("clear_ask")]  # cut after the terminal event of the turn before
    late_trailers([slow, quick], outside)
    assert [m.name for m in quick.events] == ["task_start", "task_end"]
    assert [m.name for m in outside] == ["clear_ask", "clear_ask"]
