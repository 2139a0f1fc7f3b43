"""Sans-I/O plan of one agent turn: which events, at which offset from the user's message.

The server schedules each event at ``message receipt + offset`` on the loop clock rather
than sleeping gap after gap, so measured delays match the knobs without drift. Events are
pre-serialized into a head and a tail around the per-send fields (timestamp and the turn's
ids) because the target must stay cheaper than the load generator it is measured with.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

AGENT_NAME = "wsload-agent"

PlannedEvent = tuple[float, dict[str, Any]]


@dataclass(frozen=True)
class TurnKnobs:
    """Delays in seconds: ``ttfe_s`` message to first event, ``gap_s`` between events."""

    ttfe_s: float = 0.05
    gap_s: float = 0.01
    thinking_steps: int = 2
    tools: int = 1
    tool_duration_s: float | None = None  # None: same as gap_s
    jitter: float = 0.0  # each delay is multiplied by uniform(1 - jitter, 1 + jitter)
    stream_tokens: int = 0  # stream_chunk events of the answer, one word each
    token_interval_s: float | None = None  # between two stream_chunk events; None: gap_s

    @property
    def tool_s(self) -> float:
        return self.gap_s if self.tool_duration_s is None else self.tool_duration_s

    @property
    def token_s(self) -> float:
        return self.gap_s if self.token_interval_s is None else self.token_interval_s

    @property
    def instant(self) -> bool:
        """True when every delay is 0: the whole turn is sent without sleeping."""
        return self.ttfe_s == 0 and self.gap_s == 0 and self.tool_s == 0 and self.token_s == 0

    @property
    def event_count(self) -> int:
        return 2 + self.thinking_steps + 2 * self.tools + self.stream_tokens


def plan_turn(knobs: TurnKnobs, rng: random.Random | None = None) -> list[PlannedEvent]:
    """The events of one turn with their offsets from message receipt, in send order.

    ``agent_started`` -> ``agent_thinking`` x thinking_steps -> (``tool_executing`` ->
    ``tool_completed``) x tools -> ``stream_chunk`` x stream_tokens (the answer, one word
    in ``data.content`` each: the first ``gap_s`` after the event before it, the next ones
    ``token_s`` apart) -> ``agent_completed``. ``rng`` is drawn from only when
    there is jitter, so a seeded generator gives the same plans run after run.
    """
    rng = rng if rng is not None else random.Random()
    offset = 0.0
    plan: list[PlannedEvent] = []

    def add(delay: float, event_type: str, data: dict[str, Any]) -> None:
        nonlocal offset
        if knobs.jitter and delay:
            delay *= rng.uniform(1.0 - knobs.jitter, 1.0 + knobs.jitter)
        offset += delay
        data["seq"] = len(plan)
        plan.append((offset, {"type": event_type, "data": data}))

    add(knobs.ttfe_s, "agent_started", {"agent_name": AGENT_NAME})
    for step in range(1, knobs.thinking_steps + 1):
        add(
            knobs.gap_s,
            "agent_thinking",
            {"agent_name": AGENT_NAME, "thought": f"step {step} of {knobs.thinking_steps}"},
        )
    for index in range(1, knobs.tools + 1):
        tool = f"tool_{index}"
        add(knobs.gap_s, "tool_executing", {"agent_name": AGENT_NAME, "tool_name": tool})
        before = offset
        add(knobs.tool_s, "tool_completed", {"agent_name": AGENT_NAME, "tool_name": tool})
        plan[-1][1]["data"]["duration_ms"] = round((offset - before) * 1000.0, 3)
    for index in range(knobs.stream_tokens):
        add(
            knobs.gap_s if index == 0 else knobs.token_s,
            "stream_chunk",
            {"agent_name": AGENT_NAME, "content": f"{' ' if index else ''}token{index + 1}"},
        )
    add(
        knobs.gap_s,
        "agent_completed",
        {"agent_name": AGENT_NAME, "status": "success", "events": knobs.event_count},
    )
    return plan


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """One planned event as JSON text around its per-send fields."""

    offset: float
    head: str  # '{"type":"agent_started"'
    tail: str  # ',"data":{...}}'


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_plan(plan: list[PlannedEvent]) -> tuple[EncodedEvent, ...]:
    """Pre-serialize a plan; a plan without jitter is encoded once and reused by every turn."""
    return tuple(
        EncodedEvent(
            offset,
            '{"type":' + _dumps(event["type"]),
            ',"data":' + _dumps(event.get("data", {})) + "}",
        )
        for offset, event in plan
    )


def correlation(user_id: str, thread_id: str, run_id: str) -> str:
    """The turn's id fields as a JSON fragment, serialized once per turn."""
    return f',"user_id":{_dumps(user_id)},"thread_id":{_dumps(thread_id)},"run_id":{_dumps(run_id)}'


def render(event: EncodedEvent, timestamp: float, ids: str) -> str:
    """The frame text of one event: flat, with type, timestamp, ids and data."""
    return f'{event.head},"timestamp":{timestamp!r}{ids}{event.tail}'


# injected faults ---------------------------------------------------------------------------
ERROR_MESSAGE = "injected fault: the agent failed"
HOSTILE_KINDS = (
    "malformed_json",
    "binary",
    "json_array",
    "unknown_type",
    "missing_type",
    "heartbeat_burst",
)
HEARTBEAT_BURST = 1000
UNKNOWN_EVENT_TYPE = "wsload_unknown_event"


def error_event(offset: float, seq: int) -> EncodedEvent:
    """The ``agent_error`` that ends a failed turn in place of ``agent_completed``."""
    data = {"agent_name": AGENT_NAME, "error": ERROR_MESSAGE, "error_type": "InjectedFault"}
    data["seq"] = seq
    return EncodedEvent(
        offset,
        '{"type":"agent_error"',
        ',"error_message":' + _dumps(ERROR_MESSAGE) + ',"data":' + _dumps(data) + "}",
    )


def swapped(first: EncodedEvent, second: EncodedEvent) -> tuple[EncodedEvent, EncodedEvent]:
    """Two adjacent events with their contents exchanged and their send times kept."""
    return (
        EncodedEvent(first.offset, second.head, second.tail),
        EncodedEvent(second.offset, first.head, first.tail),
    )


def hostile_frames(kind: str, timestamp: float, ids: str) -> list[str | bytes]:
    """The frames of one hostile injection (text frames as ``str``, binary as ``bytes``).

    ``malformed_json`` is a truncated event; ``binary`` a binary frame that is not UTF-8;
    ``json_array`` a JSON array holding an event; ``unknown_type`` an event of a type no
    profile knows; ``missing_type`` an event without its type field; ``heartbeat_burst``
    ``HEARTBEAT_BURST`` tiny heartbeat events at once.
    """
    ts = f'"timestamp":{timestamp!r}'
    if kind == "malformed_json":
        return ['{"type":"agent_thinking",' + ts + ids + ',"data":{"thought":"unterminated']
    if kind == "binary":
        return [b"\x00\xffwsload-binary-frame\xfe\x80"]
    if kind == "json_array":
        return ['[{"type":"agent_thinking",' + ts + ids + ',"data":{"thought":"in an array"}}]']
    if kind == "unknown_type":
        return ['{"type":"' + UNKNOWN_EVENT_TYPE + '",' + ts + ids + ',"data":{}}']
    if kind == "missing_type":
        return ["{" + ts + ids + ',"data":{"thought":"no type field"}}']
    if kind == "heartbeat_burst":
        return [f'{{"type":"heartbeat","seq":{i}}}' for i in range(HEARTBEAT_BURST)]
    raise ValueError(f"unknown hostile kind {kind!r}")
