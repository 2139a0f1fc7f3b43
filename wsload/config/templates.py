"""JSON-like templates of a profile: fields by dotted path, ``{name}`` placeholders filled in
one pass, and the chat message rendered from a template serialised once."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson


def get_field(obj: Any, dotted: str) -> Any:
    """Value at a dotted path of nested dicts, or None when any step is missing."""
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill_template(template: Any, values: dict[str, str]) -> Any:
    """Copy of a JSON-like template with ``{name}`` placeholders in strings filled in.

    In one pass: a value that itself reads like a placeholder (a message saying
    "{content}") is kept as it is, never filled in again.
    """
    if isinstance(template, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    if isinstance(template, dict):
        return {k: fill_template(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill_template(v, values) for v in template]
    return template


class JsonTemplate:
    """A JSON message template serialised once; ``render`` only splices escaped values in.

    Equivalent to ``json.dumps(fill_template(template, values))`` for string placeholders,
    at a fraction of the cost: it runs once per chat message of every user.
    """

    def __init__(self, template: Any, names: tuple[str, ...]) -> None:
        marks = {name: f"\u2063{i}\u2063wsload" for i, name in enumerate(names)}
        self._text = json.dumps(
            fill_template(template, marks), separators=(",", ":"), ensure_ascii=False
        )
        self._marks = marks

    def render(self, **values: str) -> str:
        text = self._text
        for name, mark in self._marks.items():
            text = text.replace(mark, _json_string(values[name])[1:-1])
        return text


def _json_string(value: str) -> str:
    """``json.dumps(value, ensure_ascii=False)``, five times faster with orjson.

    The two escape alike (property-tested); orjson refuses lone surrogates, which the
    standard library passes through.
    """
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False)
