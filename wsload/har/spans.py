"""Spans and streamed-token events recognised in recorded turns.

A span is a pair of events inside the turn (neither the turn's first nor its last) that
always come as start then end, as often as each other, and whose names say so
(``tool_executing``/``tool_completed``, ``step.start``/``step.end``). A streamed event
repeats within a turn, is named for it (token, chunk, delta, stream, partial) and carries a
text field whose value changes frame to frame.
"""

from __future__ import annotations

import re
from typing import Any

from wsload.har.fields import get_path, leaves

STARTS = ("start", "started", "starting", "begin", "executing", "running", "call", "open", "opened")
STARTS += ("new", "create", "created")
ENDS = (
    "end",
    "ended",
    "completed",
    "complete",
    "finished",
    "finish",
    "done",
    "result",
    "close",
    "closed",
    "update",
    "updated",
)
# Names of token-bearing events: a repeated event with changing text but another name
# (agent_thinking's steps) is progress, not a token stream.
STREAM_WORDS = re.compile(r"token|chunk|delta|stream|partial", re.IGNORECASE)
ID_TEXT = re.compile(r"[0-9a-fA-F\-]{16,}|\d+(\.\d+)?")
_SPLIT = re.compile(r"[_.:\-]")


def _named_pair(start: str, end: str) -> bool:
    """Names alike but for one word, a start word in one and an end word in the other
    (``tool_executing``/``tool_completed``, ``new_message:tool``/``update_message:tool``)."""
    a, b = _SPLIT.split(start), _SPLIT.split(end)
    if len(a) != len(b) or len(a) < 2:
        return False
    differ = [(x.lower(), y.lower()) for x, y in zip(a, b, strict=True) if x != y]
    return len(differ) == 1 and differ[0][0] in STARTS and differ[0][1] in ENDS


def infer_spans(turns: list[list[str]]) -> list[tuple[str, str]]:
    """[start, end] pairs found in every turn that has either, in order and equal count;
    of nested ones the innermost (the outer one is most of the turn)."""
    names = {n for turn in turns for n in turn}
    edges = {n for turn in turns if turn for n in (turn[0], turn[-1])}
    spans = []
    for start in sorted(names - edges):
        for end in sorted(names - edges - {start}):
            if _named_pair(start, end) and all(_paired(turn, start, end) for turn in turns):
                spans.append((start, end))
    return [s for s in spans if not any(_encloses(s, t, turns) for t in spans if t != s)]


def _encloses(outer: tuple[str, str], inner: tuple[str, str], turns: list[list[str]]) -> bool:
    for turn in turns:
        if all(n in turn for n in (*outer, *inner)):
            return turn.index(outer[0]) < turn.index(inner[0]) and turn.index(inner[1]) < (
                len(turn) - 1 - turn[::-1].index(outer[1])
            )
    return False


def _paired(turn: list[str], start: str, end: str) -> bool:
    depth = 0
    for name in turn:
        if name == start:
            if depth:
                return False
            depth = 1
        elif name == end:
            if not depth:
                return False
            depth = 0
    return depth == 0


def streamed_events(turns: list[list[tuple[str, dict[str, Any]]]]) -> tuple[list[str], str] | None:
    """The events that stream text, and the dotted path of the text, if any: the string
    field that changes from frame to frame within one answer (an id of the answer does not)."""
    names: list[str] = []
    text_field = None
    candidates = sorted({name for turn in turns for name, _ in turn})
    for name in candidates:
        per_turn = [[body for n, body in turn if n == name] for turn in turns]
        if not any(len(bodies) > 1 for bodies in per_turn) or not STREAM_WORDS.search(name):
            continue
        first = next(bodies for bodies in per_turn if bodies)
        scored = []
        for path, _ in leaves(first[0]):
            values = [[get_path(b, path) for b in bodies] for bodies in per_turn if bodies]
            flat = [v for turn_values in values for v in turn_values]
            if not all(isinstance(v, str) for v in flat) or any(ID_TEXT.fullmatch(v) for v in flat):
                continue  # ids and timestamps change too; text does not look like them
            changing = sum(len(set(v)) for v in values) / sum(len(v) for v in values)
            if any(len(set(v)) > 1 for v in values):
                scored.append((changing, path))
        if scored and text_field in (None, max(scored)[1]):
            text_field = max(scored)[1]
            names.append(name)
    return (names, text_field) if names and text_field else None
