"""The inferred profile written as TOML, the corpus of recorded messages, and the report.

Every text written passes through ``redact``: any secret the recording held (tokens,
cookies, passwords, tickets) is replaced before it reaches a file or the terminal.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from wsload.config.profile_toml import _block, _key, _value
from wsload.har.infer import Inference

SECTIONS = (
    "endpoint",
    "transport",
    "auth",
    "token",
    "ack",
    "rejection",
    "chat",
    "events",
    "stream",
    "heartbeat",
)
REDACTED = "<redacted>"


def redact(text: str, secrets: set[str]) -> str:
    """``text`` with every secret replaced, the longest first (a cookie holding a token)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def known_keys() -> dict[str, set[str]]:
    """The sections and keys this wsload's profiles have."""
    from wsload.config.profile import Profile

    hints = typing.get_type_hints(Profile)
    return {
        name: {f.name for f in dataclasses.fields(hint)}
        for name, hint in hints.items()
        if dataclasses.is_dataclass(hint)
    }


def profile_toml(
    inference: Inference, *, name: str, source: str, known: dict[str, set[str]]
) -> str:
    """The profile file: what was inferred, keys this wsload does not know left as comments."""
    lines = [
        f"# Protocol profile inferred by `wsload har` from {Path(source).name}.",
        "# Keys not written here take the default profile's values (wsload profile show FILE).",
        f"name = {_value(name)}",
        f"description = {_value(f'inferred from the recording {Path(source).name}')}",
    ]
    for section in SECTIONS:
        table = inference.profile.get(section)
        if not table:
            continue
        if section == "token" and "subject_claim" in known.get("token", ()):
            # wsload puts the subject in that claim itself: not among the extra claims
            claims = {
                k: v for k, v in table.get("claims", {}).items() if k != table.get("subject_claim")
            }
            table = {**table, "claims": claims}
        keys = known.get(section, set())
        prefix = "" if keys else "# "
        lines.append("")
        if prefix:
            lines.append(f"# (this wsload has no [{section}] keys: uncomment them in one that has)")
        lines.append(f"{prefix}[{section}]")
        for key, value in table.items():
            if key == "match" and section == "ack":
                continue
            own = "" if key in keys else "# "
            lines.append(f"{own}{_key(key)} = {_block(_tomlable(value))}")
        for match in table.get("match", []) if section == "ack" else ():
            lines.append(f"{prefix}[[ack.match]]")
            lines.extend(f"{prefix}{_key(k)} = {_value(_tomlable(v))}" for k, v in match.items())
    if inference.examples:
        lines.append("")
        lines.append("# Frames as recorded, for `wsload profile check`.")
        lines.append("[examples]")
        for key, value in inference.examples.items():
            lines.append(f"{_key(key)} = {_block(_frames(value))}")
    return redact("\n".join(lines) + "\n", inference.secrets)


def _tomlable(value: Any) -> Any:
    """A JSON value as TOML can hold it: TOML has no null, so null fields are left out."""
    if isinstance(value, dict):
        return {k: _tomlable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_tomlable(v) for v in value if v is not None]
    return value


def _frames(value: Any) -> Any:
    """Example frames as TOML can hold them: text, or a JSON value re-encoded."""
    if isinstance(value, list):
        return [_frames(v) for v in value]
    return value if isinstance(value, str) else json.dumps(value)


def corpus_text(inference: Inference) -> str:
    """One recorded message a line; JSON lines when a message spans lines."""
    if any("\n" in m for m in inference.corpus):
        lines = [json.dumps({"content": m}, ensure_ascii=False) for m in inference.corpus]
    else:
        lines = list(inference.corpus)
    return redact("\n".join(lines) + "\n", inference.secrets)


def report_text(inference: Inference, *, outputs: list[str], check: list[str]) -> str:
    """What was inferred and how sure, what to fill in, and the profile check's verdict."""
    lines = ["wsload har: " + ", ".join(outputs)]
    lines.append(f"inferred ({inference.framing} framing):")
    lines.extend(f"  [{confidence}] {what}" for confidence, what in inference.notes)
    if inference.todo:
        lines.append("still to fill in or check:")
        lines.extend(f"  - {item}" for item in dict.fromkeys(inference.todo))
    lines.extend(check)
    return redact("\n".join(lines) + "\n", inference.secrets)
