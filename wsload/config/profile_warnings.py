"""What a run with a profile cannot check, said once at load start (isolation without ids,
a streamed answer whose text is not where the profile looks)."""

from __future__ import annotations

import json
from typing import Any

from wsload.config.profile import Profile
from wsload.config.templates import get_field


def profile_warnings(profile: Profile) -> list[str]:
    """What a run with this profile does not check, for one warning each at load start.

    Isolation (``foreign_event``: another user's or thread's event in a session) is judged
    by comparing ``events.user_id_field`` and ``events.thread_id_field`` of each event with
    the session's; an event without them passes unchecked, so a backend whose events carry
    no ids gets no isolation check at all, silently, unless this says so. Pure: reads the
    profile and its example frames only.
    """
    events = profile.events
    fields = {"user": events.user_id_field, "thread": events.thread_id_field}
    out: list[str] = []
    off = [kind for kind, name in fields.items() if not name]
    frames = [f for f in (example_object(x) for x in profile.examples.turn) if f is not None]
    if frames:
        off += [
            kind
            for kind, name in fields.items()
            if name and all(name not in frame for frame in frames)
        ]
    if off:
        what = " and ".join(
            f"{kind} ({fields[kind]!r})" if fields[kind] else f"{kind} (no field set)"
            for kind in off
        )
        why = (
            "the profile names no field for it"
            if all(not fields[kind] for kind in off)
            else "the profile's example events carry no such field"
        )
        everything = len(off) == 2
        out.append(
            f"isolation checks by {what} are off: {why}, so "
            + (
                "an event leaked from another user's or thread's session is not caught "
                "(foreign_event can only come from events.run_id_field)"
                if everything
                else f"an event of another {' or '.join(off)} is not caught"
            )
            + f"; set events.{off[0]}_id_field to the event field naming the {off[0]} "
            f"(profile {profile.source})"
        )
    if problem := stream_warning(profile, frames):
        out.append(problem)
    for kind, name in fields.items():
        if "." in name:
            out.append(
                f"events.{kind}_id_field {name!r} is looked up as one top-level field of each "
                "event (nested fields are not followed): if the events carry it nested, "
                f"isolation by {kind} is off"
            )
    return out


def stream_warning(profile: Profile, frames: list[dict[str, Any]]) -> str | None:
    """When the example turn has token-bearing events but none with text where
    ``stream.text_field`` says: every run would then measure no streamed answer at all."""
    stream = profile.stream
    type_field = profile.events.type_field
    tokens = [f for f in frames if f.get(type_field) in stream.events]
    if not tokens or not stream.text_field:
        return None
    if any(isinstance(t := get_field(f, stream.text_field), str) and t for f in tokens):
        return None
    names = ", ".join(sorted({str(f.get(type_field)) for f in tokens}))
    return (
        f"stream.text_field {stream.text_field!r}: the example turn's {names} events carry no "
        "text there, so no token event is seen and turn:ttft, turn:itl, turn:tpot are never "
        'measured; set stream.text_field to the dotted path of their text (or "" to time '
        f"every {names} event as one token) (profile {profile.source})"
    )


def isolation_gap(profile: Profile, event: dict[str, Any]) -> str | None:
    """For the first event of a run: which isolation check it leaves off, else None.

    ``profile_warnings`` can only read example frames; a profile without them learns what
    the backend's events carry from the first one received.
    """
    events = profile.events
    missing = [
        f"{kind} ({name!r})"
        for kind, name in (("user", events.user_id_field), ("thread", events.thread_id_field))
        if name and name not in event
    ]
    if not missing:
        return None
    return (
        f"the backend's events carry no {' and no '.join(missing)}: isolation checks by "
        f"{'them' if len(missing) > 1 else 'it'} are off for this run"
    )


def example_object(frame: Any) -> dict[str, Any] | None:
    """The JSON object of one example frame (a table, or its text), or None."""
    if isinstance(frame, dict):
        return frame
    try:
        value = json.loads(frame)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
