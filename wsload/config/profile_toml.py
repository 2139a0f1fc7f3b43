"""A loaded protocol profile written back as TOML, every key filled in (``wsload profile show``).

A profile file may leave keys out; what a run then uses is only visible in the loaded
``Profile``. Writing it back shows the effective values and gives a complete file to copy.
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


def profile_to_toml(profile: Profile) -> str:
    """The profile as a TOML document: top-level keys, then one table per section."""
    lines = [f"# effective protocol profile, loaded from {profile.source}"]
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
            lines.append(f"{_key(item.name)} = {_value(getattr(section, item.name))}")
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else _string(name)


def _string(text: str) -> str:
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
