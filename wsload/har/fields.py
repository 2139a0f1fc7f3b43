"""Finding fields in recorded messages: where a known value sits, which text varies.

Paths are dotted (``data.user_id``), as profile keys that say "dotted path" read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from wsload.har.messages import ID_LIKE

THREAD_NAMES = ("thread", "conversation", "chat_id", "session_id", "room")
RUN_NAMES = ("run", "turn", "request_id", "message_id", "task_id", "response_id")
USER_NAMES = ("user_id", "uid", "user", "userid", "subject", "sub", "identifier")


def leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, scalar value) of a JSON-like value's tables."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(item, dict):
                yield from leaves(item, path)
            else:
                yield path, item


def path_of(value: Any, wanted: str, *, top_level: bool = False) -> str | None:
    """The (shortest) dotted path whose value equals ``wanted``."""
    paths = [p for p, v in leaves(value) if v == wanted and (not top_level or "." not in p)]
    return min(paths, key=lambda p: (p.count("."), len(p))) if paths else None


def path_named(value: Any, names: tuple[str, ...], *, top_level: bool = False) -> str | None:
    """A path whose last key looks like one of ``names`` and holds a string or number."""
    for path, item in leaves(value):
        if top_level and "." in path:
            continue
        last = path.rsplit(".", 1)[-1].lower()
        scalar = isinstance(item, str | int) and not isinstance(item, bool)
        if scalar and any(n == last or last.startswith(n) or last.endswith(n) for n in names):
            return path
    return None


def get_path(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def set_path(value: dict[str, Any], path: str, new: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        value = value[part]
    value[parts[-1]] = new


def text_path(bodies: list[dict[str, Any]], exclude: set[str]) -> str | None:
    """The string field carrying free text in these messages: present in them all, the
    longest on average, varying between them when there are several."""
    if not bodies:
        return None
    scored = []
    for path, _ in leaves(bodies[0]):
        if path in exclude:
            continue
        values = [get_path(b, path) for b in bodies]
        if not all(isinstance(v, str) for v in values):
            continue
        if all(ID_LIKE.fullmatch(v) for v in values):
            continue  # a message id or a timestamp changes too, but is no text
        varies = len(set(values)) > 1 or len(values) == 1
        scored.append((varies, sum(len(v) for v in values) / len(values), path))
    if not scored:
        return None
    varies, length, path = max(scored)
    return path if varies and length > 0 else None
