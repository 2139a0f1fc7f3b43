"""A loaded protocol profile written back as TOML, every key filled in (``wsload profile show``).

A profile file may leave keys out (it is merged over the default profile); what a run then
uses is only visible in the loaded ``Profile``. Writing it back shows the effective values,
marks the ones the file does not set, and gives a complete file to copy.
The writer covers the value types profiles hold (strings, numbers, booleans, dates, lists
and tables, nested) and loads back to the same profile.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
from typing import Any

from wsload.config.profile import Profile

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def profile_to_toml(profile: Profile, notes: dict[str, str] | None = None) -> str:
    """The profile as a TOML document: top-level keys, then one table per section.

    ``notes`` maps dotted keys to a comment written after their value (where a key the file
    leaves out comes from, say).
    """
    notes = notes or {}
    lines = [f"# effective protocol profile, loaded from {profile.source}"]
    if notes:
        lines.append("# keys with a comment are not in the file: it is merged over the default")
        lines.append("# profile (wsload profile show default)")
    sections = []
    for item in dataclasses.fields(profile):
        if item.name == "source":  # where it came from, not a profile key
            continue
        value = getattr(profile, item.name)
        if dataclasses.is_dataclass(value):
            sections.append((item.name, value))
        else:
            lines.append(f"{_key(item.name)} = {_value(value)}")
    for name, section in sections:
        lines.append("")
        lines.append(f"[{_key(name)}]")
        for item in dataclasses.fields(section):
            value = getattr(section, item.name)
            line = f"{_key(item.name)} = {_block(value)}"
            note = notes.get(f"{name}.{item.name}")
            if note:
                line += f"  # {note}"
            lines.append(line)
    return "\n".join(lines) + "\n"


def _block(value: Any) -> str:
    """A value at a section's top level: a list of tables or long strings one item a line."""
    if isinstance(value, list | tuple) and value and all(isinstance(v, dict | str) for v in value):
        items = [_value(v) for v in value]
        if sum(len(i) for i in items) > 80 and all("\n" not in i for i in items):
            return "[\n" + "".join(f"  {i},\n" for i in items) + "]"
    return _value(value)


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _string(name)


_LITERAL_OK = re.compile(r"^[^'\x00-\x1f\x7f]*$")


def _string(text: str) -> str:
    # JSON text (an example frame, say) reads best as a literal string: no escapes at all.
    if '"' in text and _LITERAL_OK.fullmatch(text):
        return f"'{text}'"
    # JSON escapes are TOML basic-string escapes; TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, dict):
        items = ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")
