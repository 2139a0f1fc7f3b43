"""One recorded session cut into turns: the server's messages between one chat message and
the next, each ending at the terminal event; what does not belong to every answer (a
keep-alive sent meanwhile, a thread created on the first message) taken out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from wsload.errors import ConfigError
from wsload.har.fields import leaves
from wsload.har.messages import Message
from wsload.har.spans import infer_spans


@dataclass
class Turn:
    chat: Message
    events: list[Message]
    complete: bool


def first_turn_only(turns: list[Turn]) -> set[str]:
    """Events only the first of several turns had, once, outside any span (a thread being
    created, a title given): once per conversation, not part of every answer."""
    if len(turns) < 2:
        return set()
    later = {m.name for t in turns[1:] for m in t.events}
    names = [m.name for m in turns[0].events]
    spans = {n for pair in infer_spans([[n or "" for n in names]]) for n in pair}
    return {
        n
        for n in names[1:-1]
        if n
        and n not in later
        and names.count(n) == 1
        and n not in spans
        and not ("error" in n or "fail" in n)
    }


def late_trailers(turns: list[Turn], outside: list[Message]) -> None:
    """Move out of the turns the events that trail the terminal one but, when the next
    message was sent quickly, arrive after it and open the next turn instead (Chainlit's
    ``clear_ask`` after ``task_end``): the previous answer's, not part of any turn."""
    trailing = {m.name for m in outside if m.name}
    for turn in turns:
        head = turn.events[0] if turn.events else None
        if head is None or head.name not in trailing:
            continue
        if all(m.name != head.name for m in turn.events[1:]):
            outside.append(head)
            turn.events = turn.events[1:]


def is_stray(message: Message, turn: Turn, turns: list[Turn]) -> bool:
    """An event of only some turns that shares none of the ids the turn's others carry."""
    if all(any(m.name == message.name for m in t.events) for t in turns):
        return False
    others = [m for m in turn.events if m.name != message.name]
    shared = [set(_scalars(m.body)) for m in others]
    common = set.intersection(*shared) if shared else set()
    return bool(common) and not (common & set(_scalars(message.body)))


def _scalars(body: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in leaves(body) if isinstance(v, str | int | float)]


def answers_to(messages: list[Message], pings: list[Message]) -> list[Message]:
    out = []
    for ping in pings:
        after = [m for m in messages[messages.index(ping) :] if not m.sent]
        answer = next((m for m in after if "pong" in (m.raw or "").lower()), None)
        if answer is not None:
            out.append(answer)
    return out


def split_turns(messages, chats, pongs) -> list[Turn]:
    turns = []
    for chat in chats:
        start_index = messages.index(chat)
        events = []
        for m in messages[start_index + 1 :]:
            if m.sent and m in chats:
                break
            if not m.sent and m not in pongs and m.name:
                events.append(m)
        turns.append(Turn(chat, events, False))
    return turns


def terminal_event(turns: list[Turn]) -> str:
    lasts = Counter(t.events[-1].name for t in turns if t.events and t.events[-1].name)
    if not lasts:
        raise ConfigError(
            "no chat message of the recording got an answer on the WebSocket",
            fix="record again and wait for the answers before exporting the HAR",
        )
    return lasts.most_common(1)[0][0]


def frames_unique(turns: list[Turn]) -> bool:
    for turn in turns:
        raws = [m.raw for m in turn.events]
        if len(set(raws)) < len(raws):
            return False
        keys = set.intersection(*(set(m.body) for m in turn.events)) if turn.events else set()
        varying = [
            k for k in keys if len({repr(m.body[k]) for m in turn.events}) == len(turn.events)
        ]
        if len(turn.events) > 1 and not varying:
            return False
    return True
