"""The parts of `wsload har` that infer from recorded turns: grammar, spans, streamed text."""

from __future__ import annotations

import pytest

from wsload.har.grammar_infer import accepts, infer_sequence
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
