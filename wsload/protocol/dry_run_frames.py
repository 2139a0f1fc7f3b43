"""The dry run's material: its findings, the example frames it feeds (the profile's own or
synthesised from it), and a sans-I/O session on a clock that only moves forward.

``dry_run.py`` feeds these through the real client; this module only builds them.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from wsload.config.profile import Profile
from wsload.config.profile_warnings import example_object as frame_object
from wsload.protocol.frames import TEXT
from wsload.protocol.grammar import Grammar
from wsload.protocol.session import ClientSession
from wsload.protocol.upgrade import accept_for, build_request, parse_ws_url

ERROR, WARNING = "error", "warning"
DRY_USER, DRY_THREAD, DRY_RUN = "dry-run-user", "dry-run-thread", "dry-run-1"
T0 = 1000.0  # the dry run's clock: any start will do, it only has to move forward
STEP = 0.01


@dataclass(frozen=True)
class Finding:
    """One thing a run with this profile would count as a failure, and the key to change."""

    level: str  # ERROR: the profile's own example frames fail; WARNING: an assumption
    key: str  # the profile key to change
    problem: str  # what a run would see
    fix: str  # how to change the key

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}; {self.fix}"


@dataclass(frozen=True)
class DryRunReport:
    """What the dry run fed through the client and what it found."""

    findings: tuple[Finding, ...]
    fed: tuple[str, ...]  # one line per part: "ack (example)", "turn (synthesised): a b c"
    synthesised: tuple[str, ...] = field(default=())  # the example keys made up

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == WARNING)


# frames -----------------------------------------------------------------------------------
def frame_text(frame: dict[str, Any] | str) -> str:
    """The text of one example frame: a string as given, a table as compact JSON."""
    if isinstance(frame, str):
        return frame
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def server_frame(text: str | bytes, opcode: int = TEXT) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    n = len(data)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + data


def set_field(obj: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        child = obj.get(part)
        if not isinstance(child, dict):
            child = obj[part] = {}
        obj = child
    obj[last] = value


def shortest_turn(grammar: Grammar, terminal: tuple[str, ...]) -> list[str] | None:
    """The shortest event sequence the grammar accepts that ends with a terminal event."""
    ends = frozenset(terminal)
    queue: deque[tuple[frozenset[int], list[str]]] = deque([(grammar.initial, [])])
    seen = {grammar.initial}
    while queue:
        states, names = queue.popleft()
        if names and names[-1] in ends and grammar.accepts(states):
            return names
        if len(names) > 64:
            continue
        for name in sorted(grammar.expected(states)):
            nxt = grammar.step(states, name)
            if nxt and nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, [*names, name]))
    return None


def with_repeats(grammar: Grammar, names: list[str]) -> list[str]:
    """``names`` with each event the grammar lets repeat sent twice in a row (where valid)."""
    out = list(names)
    done: set[str] = set()
    i = 0
    while i < len(out):
        name = out[i]
        if name not in done and grammar.repeatable(name):
            done.add(name)
            candidate = [*out[: i + 1], name, *out[i + 1 :]]
            if grammar.matches(candidate):
                out = candidate
                i += 1
        i += 1
    return out


@dataclass
class Frames:
    ack: dict[str, Any] | str
    turn: list[dict[str, Any] | str]
    next_turn: list[dict[str, Any] | str]
    pong: dict[str, Any] | str
    rejection: dict[str, Any] | str | None
    close_code: int | None
    made_up: set[str]


def example_frames(profile: Profile, grammar: Grammar) -> tuple[Frames, list[Finding]]:
    ex, events = profile.examples, profile.events
    made_up: set[str] = set()
    findings: list[Finding] = []
    ack: dict[str, Any] | str = ex.ack
    if not ack:
        made_up.add("ack")
        built: dict[str, Any] = {}
        for key, value in (profile.ack.match[0] if profile.ack.match else {}).items():
            set_field(built, key, value)
        set_field(built, profile.ack.user_id_field, DRY_USER)
        ack = built
    turn: list[dict[str, Any] | str] = list(ex.turn)
    if not turn:
        made_up.add("turn")
        names = shortest_turn(grammar, events.terminal)
        if names is None:
            findings.append(
                Finding(
                    ERROR,
                    "events.terminal",
                    f"no turn events.sequence accepts ends with a terminal event "
                    f"({', '.join(events.terminal)}), so no turn can ever end well",
                    "name as terminal the event that ends every turn",
                )
            )
            names = []
        ids = [
            (events.user_id_field, DRY_USER),
            (events.thread_id_field, DRY_THREAD),
            (events.run_id_field, DRY_RUN),
        ]
        for name in with_repeats(grammar, names):
            frame = {f: v for f, v in ids if f}
            frame[events.type_field] = name
            turn.append(frame)
    next_turn = list(ex.next_turn)
    if not next_turn:
        made_up.add("next_turn")
        next_turn = [next_run(f, events.run_id_field) for f in turn]
    pong: dict[str, Any] | str = ex.pong
    if not pong:
        made_up.add("pong")
        pong = {profile.heartbeat.pong_type_field or events.type_field: profile.heartbeat.pong_type}
    rejection: dict[str, Any] | str | None = ex.rejection
    if not rejection:
        made_up.add("rejection")
        rejection = None
        if profile.rejection.error_types:
            rejection = {
                profile.rejection.type_field or events.type_field: profile.rejection.error_types[0]
            }
            codes = profile.rejection.auth_error_codes
            rejection[profile.rejection.error_code_field] = codes[0] if codes else "AUTH_FAILED"
    close_code = ex.rejection_close_code or (
        profile.rejection.close_codes[0] if profile.rejection.close_codes else None
    )
    return Frames(ack, turn, next_turn, pong, rejection, close_code, made_up), findings


def next_run(frame: dict[str, Any] | str, run_field: str) -> dict[str, Any] | str:
    """The same frame as the next turn would send it: another run id, if it has one."""
    obj = frame_object(frame)
    if not run_field or obj is None or run_field not in obj:
        return frame
    obj = {**obj, run_field: f"{obj[run_field]}-next"}
    return obj if isinstance(frame, dict) else frame_text(obj)


# the run ------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = T0

    def tick(self) -> float:
        self.now += STEP
        return self.now


def open_session(profile: Profile, subject: str | None, clock: Clock) -> ClientSession:
    endpoint = parse_ws_url(f"ws://127.0.0.1{profile.endpoint.path}")
    session = ClientSession(profile, build_request(endpoint), expected_subject=subject)
    session.request_sent(clock.now)
    return session


def answer_101(session: ClientSession) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_for(session.request.key)}\r\n\r\n"
    ).encode()


def show(frame: dict[str, Any] | str, limit: int = 90) -> str:
    text = frame_text(frame)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_holding(obj: dict[str, Any] | None, values: set[str] | frozenset[str]) -> str | None:
    """The top-level field of ``obj`` whose value is one of ``values``."""
    if obj is None:
        return None
    for key, value in obj.items():
        if isinstance(value, str) and value in values:
            return key
    return None
