"""The chat message as a template, and the corpus, from the recorded chat messages.

The user's text becomes ``{content}`` (the longest string that changes from message to
message and is no id), the thread id ``{thread_id}`` (where the events repeat it, or a
field named for a thread), and an id that changes with every message ``{message_id}``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from wsload.errors import ConfigError
from wsload.har.fields import (
    THREAD_NAMES,
    get_path,
    leaves,
    path_named,
    path_of,
    set_path,
    text_path,
)
from wsload.har.messages import ID_LIKE

ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT.*")


def infer_chat(out, turns, client_field: str, is_sio: bool) -> None:
    """``[chat]`` and the corpus from the chat messages of the finished turns."""
    bodies = [t.chat.body for t in turns]
    thread_values = {}
    thread_field = out.profile["events"].get("thread_id_field")
    thread_path = None
    if thread_field:
        value = turns[0].events[0].body.get(thread_field)
        thread_path = path_of(bodies[0], value) if value is not None else None
    if thread_path is None:
        thread_path = path_named(bodies[0], THREAD_NAMES)
    exclude = {thread_path} if thread_path else set()
    content_path = text_path(bodies, exclude | {client_field})
    if content_path is None:
        raise ConfigError(
            "the recorded chat messages hold no text field: cannot tell where the user's "
            "message goes",
            fix="record a session in which you type chat messages into the product",
        )
    template = copy.deepcopy(bodies[0])
    set_path(template, content_path, "{content}")
    if thread_path:
        thread_values = {get_path(b, thread_path) for b in bodies}
        set_path(template, thread_path, "{thread_id}")
    ids = _per_message_ids(bodies, {content_path, thread_path})
    for path in ids:
        set_path(template, path, "{message_id}")
    if ids:
        out.note("likely", f"chat message: a fresh id per message at {', '.join(ids)}")
    section = out.section("chat")
    section["message"] = template
    if is_sio:
        section["emit"] = turns[0].chat.name
    out.corpus = [str(get_path(b, content_path)) for b in bodies]
    out.note(
        "sure" if len(bodies) > 1 else "likely",
        f"chat message: text at {content_path!r}"
        + (
            f", thread id at {thread_path!r} ({len(thread_values)} thread(s))"
            if thread_path
            else ", no thread id"
        )
        + (f", emitted as {turns[0].chat.name!r}" if is_sio else ""),
    )


def _per_message_ids(bodies: list[dict[str, Any]], taken: set[str | None]) -> list[str]:
    """Fields holding an id that changes from one chat message to the next."""
    if len(bodies) < 2:
        return []
    out = []
    for path, _ in leaves(bodies[0]):
        values = [get_path(b, path) for b in bodies]
        if path in taken or not all(isinstance(v, str) and len(v) >= 16 for v in values):
            continue
        distinct = len(set(values)) == len(values)
        if distinct and all(ID_LIKE.fullmatch(v) for v in values) and not ISO_TIME.match(values[0]):
            out.append(path)
    return out
