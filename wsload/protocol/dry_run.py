"""The dry run of a protocol profile: example frames through the real client, sans I/O.

A profile can load (every key known and well typed) and still not fit its backend: a
streaming event whose frames repeat byte for byte under ``frames_are_unique``, a pong whose
type is in another field than the events' type, an ack without the user id where the
profile looks for it. Each of these fails every session or every turn of a run, and only
shows once the load runs. The dry run shows it before: it feeds the profile's example
frames (``[examples]``: the ack, one turn in order, the next turn, a pong, a rejection), or
frames synthesised from the profile where it gives none, through the same ``ClientSession``
and ``TurnTracker`` a run uses, and turns every outcome a run would count as a failure
into a ``Finding`` that names the profile key to change and how.

Findings on frames the profile gives are errors: the backend sends them, so the profile
cannot work. Findings on synthesised frames are warnings: they show what the profile
assumes about frames it has never seen (real frames in ``[examples]`` settle it).
"""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from wsload import taxonomy
from wsload.config.profile import Profile
from wsload.config.profile_warnings import example_object as frame_object
from wsload.config.templates import get_field
from wsload.protocol import events as ev
from wsload.protocol.frames import CLOSE, TEXT
from wsload.protocol.grammar import Grammar
from wsload.protocol.session import ClientSession
from wsload.protocol.tracker import TurnTracker
from wsload.protocol.upgrade import accept_for, build_request, parse_ws_url

ERROR, WARNING = "error", "warning"
DRY_USER, DRY_THREAD, DRY_RUN = "dry-run-user", "dry-run-thread", "dry-run-1"
_T0 = 1000.0  # the dry run's clock: any start will do, it only has to move forward
_STEP = 0.01


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


def _server_frame(text: str | bytes, opcode: int = TEXT) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    n = len(data)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + data


def _set_field(obj: dict[str, Any], dotted: str, value: Any) -> None:
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
class _Frames:
    ack: dict[str, Any] | str
    turn: list[dict[str, Any] | str]
    next_turn: list[dict[str, Any] | str]
    pong: dict[str, Any] | str
    rejection: dict[str, Any] | str | None
    close_code: int | None
    made_up: set[str]


def _frames(profile: Profile, grammar: Grammar) -> tuple[_Frames, list[Finding]]:
    ex, events = profile.examples, profile.events
    made_up: set[str] = set()
    findings: list[Finding] = []
    ack: dict[str, Any] | str = ex.ack
    if not ack:
        made_up.add("ack")
        built: dict[str, Any] = {}
        for key, value in (profile.ack.match[0] if profile.ack.match else {}).items():
            _set_field(built, key, value)
        _set_field(built, profile.ack.user_id_field, DRY_USER)
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
        next_turn = [_next_run(f, events.run_id_field) for f in turn]
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
    return _Frames(ack, turn, next_turn, pong, rejection, close_code, made_up), findings


def _next_run(frame: dict[str, Any] | str, run_field: str) -> dict[str, Any] | str:
    """The same frame as the next turn would send it: another run id, if it has one."""
    obj = frame_object(frame)
    if not run_field or obj is None or run_field not in obj:
        return frame
    obj = {**obj, run_field: f"{obj[run_field]}-next"}
    return obj if isinstance(frame, dict) else frame_text(obj)


# the run ------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = _T0

    def tick(self) -> float:
        self.now += _STEP
        return self.now


def _open_session(profile: Profile, subject: str | None, clock: _Clock) -> ClientSession:
    endpoint = parse_ws_url(f"ws://127.0.0.1{profile.endpoint.path}")
    session = ClientSession(profile, build_request(endpoint), expected_subject=subject)
    session.request_sent(clock.now)
    return session


def _answer_101(session: ClientSession) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_for(session.request.key)}\r\n\r\n"
    ).encode()


def _show(frame: dict[str, Any] | str, limit: int = 90) -> str:
    text = frame_text(frame)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _field_holding(obj: dict[str, Any] | None, values: set[str] | frozenset[str]) -> str | None:
    """The top-level field of ``obj`` whose value is one of ``values``."""
    if obj is None:
        return None
    for key, value in obj.items():
        if isinstance(value, str) and value in values:
            return key
    return None


class _DryRun:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.grammar = profile.grammar
        self.clock = _Clock()
        self.findings: list[Finding] = []
        self.fed: list[str] = []
        self.frames, found = _frames(profile, self.grammar)
        self.findings.extend(found)

    def level(self, part: str) -> str:
        if part == "next_turn" and part in self.frames.made_up:
            part = "turn"  # the example turn replayed: as good as the turn it comes from
        return WARNING if part in self.frames.made_up else ERROR

    def origin(self, part: str) -> str:
        return "synthesised" if part in self.frames.made_up else "example"

    def add(self, part: str, key: str, problem: str, fix: str) -> None:
        finding = Finding(self.level(part), key, problem, fix)
        if all((f.key, f.problem) != (key, problem) for f in self.findings):
            self.findings.append(finding)

    # the parts -------------------------------------------------------------------------
    def run(self) -> DryRunReport:
        session = self.ack()
        if session is not None:
            self.pong(session)
            first = self.turn(session, self.frames.turn, "turn")
            if first:
                self.turn(session, self.frames.next_turn, "next_turn")
            self.isolation()
        self.rejection()
        return DryRunReport(
            tuple(self.findings), tuple(self.fed), tuple(sorted(self.frames.made_up))
        )

    def ack(self) -> ClientSession | None:
        profile, frame = self.profile, self.frames.ack
        obj = frame_object(frame)
        user = get_field(obj, profile.ack.user_id_field) if obj is not None else None
        subject = DRY_USER if user is None else str(user)
        session = _open_session(profile, subject, self.clock)
        if not profile.ack.required:
            session.receive_data(_answer_101(session), self.clock.tick())
            self.fed.append("ack: not required, the session opens with the 101")
            return session
        self.fed.append(f"ack ({self.origin('ack')}): {_show(frame)}")
        got = session.receive_data(
            _answer_101(session) + _server_frame(frame_text(frame)), self.clock.tick()
        )
        acked = [e for e in got if isinstance(e, ev.Acked)]
        if acked:
            if acked[0].mismatch is not None or user is None:
                where = profile.ack.user_id_field
                self.add(
                    "ack",
                    "ack.user_id_field",
                    f"the ack has no user id at {where!r}, so every session fails as "
                    f"{taxonomy.IDENTITY_MISMATCH} (the ack must name the token's subject)",
                    "set ack.user_id_field to the dotted path of the user id in the ack "
                    "(e.g. 'data.user_id')",
                )
            return session
        rejected = [e for e in got if isinstance(e, ev.Rejected)]
        if rejected:
            problem = f"the ack is taken as {rejected[0].failure} ({rejected[0].detail})"
        else:
            problem = (
                "the ack matches none of ack.match, so every session fails as "
                f"{taxonomy.AUTH_TIMEOUT} after ack.timeout_s"
            )
        self.add(
            "ack",
            "ack.match",
            problem,
            "add a [[ack.match]] table whose fields (dotted paths) all equal the ack's, "
            'e.g. type = "connection_established"',
        )
        return None

    def pong(self, session: ClientSession) -> None:
        hb, frame = self.profile.heartbeat, self.frames.pong
        self.fed.append(f"ping, then the pong ({self.origin('pong')}): {_show(frame)}")
        session.ping(self.clock.tick())
        got = session.receive_data(_server_frame(frame_text(frame)), self.clock.tick())
        if any(isinstance(e, ev.Pong) for e in got):
            return
        obj = frame_object(frame)
        seen = ", ".join(type(e).__name__ for e in got) or "nothing"
        holder = _field_holding(obj, {hb.pong_type})
        if holder is not None and holder != hb.pong_type_field:
            self.add(
                "pong",
                "heartbeat.pong_type_field",
                f"the pong has its type in {holder!r}, the profile looks in "
                f"{hb.pong_type_field!r}: every pong is a {taxonomy.PROTOCOL_ERROR} "
                f"({seen}), no ping is timed and the session ends in pong_timeout",
                f'set heartbeat.pong_type_field = "{holder}"',
            )
            return
        value = obj.get(hb.pong_type_field) if obj is not None else None
        self.add(
            "pong",
            "heartbeat.pong_type",
            f"the pong is not taken as the pong of the ping ({seen}; its "
            f"{hb.pong_type_field!r} is {value!r}, the profile expects {hb.pong_type!r}): no "
            f"ping is timed and the session ends in pong_timeout",
            f'set heartbeat.pong_type = "{value}"'
            if isinstance(value, str)
            else "set heartbeat.pong_type_field and heartbeat.pong_type to the pong's type",
        )

    def turn(self, session: ClientSession, frames: list[dict[str, Any] | str], part: str) -> bool:
        """One turn through the session; whether it ended well."""
        profile, events = self.profile, self.profile.events
        objects = [frame_object(f) for f in frames]
        names = [str(o.get(events.type_field)) if o is not None else "?" for o in objects]
        label = "turn" if part == "turn" else "the next turn"
        origin = self.origin(part)
        if part == "next_turn" and part in self.frames.made_up:
            origin = f"the {self.origin('turn')} turn again, with another run id if it has one"
        self.fed.append(f"{label} ({origin}): {' '.join(names) or '(no frames)'}")
        thread = next(
            (
                str(o[events.thread_id_field])
                for o in objects
                if o is not None and events.thread_id_field and o.get(events.thread_id_field)
            ),
            DRY_THREAD,
        )
        session.thread_id = thread
        tracker = TurnTracker(
            events,
            self.grammar,
            sent_at=self.clock.tick(),
            user_id=session.user_id,
            thread_id=thread,
            timeout_s=profile.chat.timeout_s,
            event_timeout_s=profile.chat.event_timeout_s,
            stream=profile.stream,
        )
        session.begin_turn(tracker)
        ended = repeated = False
        for frame, obj in zip(frames, objects, strict=True):
            got = session.receive_data(_server_frame(frame_text(frame)), self.clock.tick())
            for event in got:
                if isinstance(event, ev.TurnEnded):
                    ended = True
                else:
                    repeated = repeated or isinstance(event, ev.Duplicate)
                    self.session_event(event, frame, obj, part)
        session.end_turn()
        result = tracker.result() if ended else tracker.expire(self.clock.tick())
        for failure, detail in result.failures:
            self.turn_failure(failure, detail, names, part)
        if not ended and frames and not repeated:
            self.add(
                part,
                "events.terminal",
                f"{label} never ends: none of its events is terminal "
                f"({', '.join(events.terminal)}), so every turn ends in "
                f"{taxonomy.EVENT_TIMEOUT}",
                f"name the last event of a turn ({names[-1]!r}) in events.terminal",
            )
        return ended and result.ok

    def session_event(
        self, event: Any, frame: dict[str, Any] | str, obj: dict[str, Any] | None, part: str
    ) -> None:
        events = self.profile.events
        shown = _show(frame, 60)
        if isinstance(event, ev.ProtocolError):
            if obj is None:
                self.add(
                    part,
                    f"examples.{part}",
                    f"the frame {shown} is {event.detail.removeprefix('a text frame that is ')}",
                    "give the frame as the backend sends it: a JSON object",
                )
                return
            value = obj.get(events.type_field)
            if not isinstance(value, str):
                holder = _field_holding(obj, self.known_names())
                self.add(
                    part,
                    "events.type_field",
                    f"the frame {shown} has no string {events.type_field!r}: every such event "
                    f"is a {taxonomy.PROTOCOL_ERROR}",
                    f'set events.type_field = "{holder}"'
                    if holder
                    else "set events.type_field to the field naming the event",
                )
                return
            self.add(
                part,
                "events.optional",
                f"{value!r} is in none of events.sequence, optional, error or ignore: every "
                f"one is a {taxonomy.PROTOCOL_ERROR} (session:frame)",
                f"add {value!r} to events.sequence where it comes, to events.optional if it "
                "may come anywhere in a turn, or to events.ignore",
            )
        elif isinstance(event, ev.ServerError):
            self.add(
                part,
                "rejection.error_types",
                f"the frame {shown} is taken as a server error ({event.detail})",
                "remove its type from rejection.error_types, or give a turn without errors",
            )
        elif isinstance(event, ev.Duplicate):
            self.cross_turn_duplicate(event, part)
        elif isinstance(event, ev.Foreign):
            self.add(
                part,
                "events.user_id_field",
                f"an event between turns is someone else's ({event.detail})",
                "make the example frames name the ack's user and one thread",
            )

    def cross_turn_duplicate(self, event: ev.Duplicate, part: str) -> None:
        events = self.profile.events
        if "the same frame again" in event.detail:
            self.add(
                part,
                "events.frames_are_unique",
                f"events.frames_are_unique = true and the frames carry no "
                f"{events.run_id_field!r}: the next turn's frames are the same bytes as the "
                f"turn's before, so they count as {taxonomy.SEQUENCE_DUPLICATE} (session:"
                f"duplicate) and every second turn ends in {taxonomy.EVENT_TIMEOUT}",
                "set events.frames_are_unique = false; if the backend's frames do differ from "
                "turn to turn (a timestamp or id), give examples.next_turn as captured",
            )
        else:
            self.add(
                part,
                "events.run_id_field",
                "the next turn's events carry the turn before's run id: they count as "
                f"{taxonomy.SEQUENCE_DUPLICATE} (session:duplicate)",
                "give examples.next_turn as captured; if the backend reuses "
                f"{events.run_id_field!r} across turns, set events.run_id_field to a field "
                'that names one turn, or to ""',
            )

    def turn_failure(self, failure: str, detail: str, names: list[str], part: str) -> None:
        events = self.profile.events
        sequence = " ".join(names)
        if failure == taxonomy.SEQUENCE_DUPLICATE and detail.endswith("received twice"):
            name = detail.removesuffix(" received twice")
            self.add(
                part,
                "events.frames_are_unique",
                f"events.frames_are_unique = true makes two identical `{name}` frames a "
                f"{taxonomy.SEQUENCE_DUPLICATE}, in every turn"
                + (
                    f" (`{name}` may repeat and these frames carry nothing that differs)"
                    if part in self.frames.made_up
                    else ""
                ),
                "set it false, or give each frame an id or timestamp"
                + (
                    " (then add the real frames as [examples] to check)"
                    if part in self.frames.made_up
                    else ""
                ),
            )
        elif failure == taxonomy.SEQUENCE_DUPLICATE:
            name = detail.removeprefix("second ")
            self.add(
                part,
                "events.sequence",
                f"`{name}` comes twice in `{sequence}` where events.sequence "
                f"({events.sequence!r}) allows it once: {taxonomy.SEQUENCE_DUPLICATE}",
                f"write `{name}+` (or `{name}*`) in events.sequence",
            )
        elif failure in (taxonomy.SEQUENCE_ORDER, taxonomy.SEQUENCE_MISSING):
            self.add(
                part,
                "events.sequence",
                f"events.sequence ({events.sequence!r}) does not accept `{sequence}`: "
                f"{failure} ({detail})",
                "write the order the backend sends in events.sequence (names, ( ), |, + * ?)",
            )
        elif failure == taxonomy.AGENT_ERROR:
            self.add(
                part,
                "events.error",
                f"`{sequence}` holds an error event ({detail}): the turn is an {failure}",
                "give a turn that succeeds as the example, or take the event out of "
                "events.error if it is no error",
            )
        elif failure == taxonomy.FOREIGN_EVENT:
            key = next(
                (
                    k
                    for k, f in (
                        ("events.user_id_field", events.user_id_field),
                        ("events.thread_id_field", events.thread_id_field),
                        ("events.run_id_field", events.run_id_field),
                    )
                    if f and detail.startswith(f"{detail.split(':')[0]}: {f} ")
                ),
                "events.user_id_field",
            )
            self.add(
                part,
                key,
                f"an event of the turn is taken as someone else's: {failure} ({detail})",
                "make the example frames name the ack's user, one thread and one run per "
                "turn; if the field names something else, point the key at the right field",
            )
        elif failure == taxonomy.EVENT_TIMEOUT:
            pass  # reported as a turn that never ends
        else:
            self.add(part, f"examples.{part}", f"{failure}: {detail}", "check the example")

    def known_names(self) -> frozenset[str]:
        events = self.profile.events
        return frozenset({*self.grammar.names, *events.optional, *events.error, *events.ignore})

    def isolation(self) -> None:
        """Whether the turn's frames carry the ids the isolation checks compare."""
        events = self.profile.events
        objects = [o for f in self.frames.turn if (o := frame_object(f)) is not None]
        if not objects:
            return
        for key, name in (
            ("events.user_id_field", events.user_id_field),
            ("events.thread_id_field", events.thread_id_field),
        ):
            if not name:
                continue
            if all(name not in o for o in objects):
                self.findings.append(
                    Finding(
                        WARNING,
                        key,
                        f"the {self.origin('turn')} turn's frames carry no {name!r}: "
                        f"{'leaked' if 'user' in key else 'cross-thread'} events cannot be "
                        "caught by this field (isolation checks on it are off)",
                        f"set {key} to the top-level field that names the "
                        f"{'user' if 'user' in key else 'thread'} in events, if there is one",
                    )
                )

    def rejection(self) -> None:
        profile, rej = self.profile, self.profile.rejection
        frame, code = self.frames.rejection, self.frames.close_code
        if frame is None:
            self.fed.append("rejection: rejection.error_types is empty, none to try")
            return
        closing = f", then close {code}" if code else ", then the link drops"
        self.fed.append(f"rejection ({self.origin('rejection')}): {_show(frame)}{closing}")
        session = _open_session(profile, DRY_USER, self.clock)
        data = _answer_101(session) + _server_frame(frame_text(frame))
        if code:
            data += _server_frame(struct.pack("!H", code) + b"bad token", CLOSE)
        got = session.receive_data(data, self.clock.tick())
        if not code:
            got += session.receive_eof(self.clock.tick())
        if any(isinstance(e, ev.Acked) for e in got):
            self.add(
                "rejection",
                "ack.match",
                "the rejection matches ack.match: a refused session is taken as acked",
                "make ack.match name a field only the ack has",
            )
            return
        rejected = next((e for e in got if isinstance(e, ev.Rejected)), None)
        obj = frame_object(frame)
        if rejected is None or rejected.error_code is None:
            holder = _field_holding(obj, frozenset(rej.error_types))
            value = obj.get(rej.type_field) if obj is not None else None
            if holder is not None and holder != rej.type_field:
                key, fix = "rejection.type_field", f'set rejection.type_field = "{holder}"'
                why = f"has its type in {holder!r}, the profile looks in {rej.type_field!r}"
            else:
                key = "rejection.error_types"
                fix = (
                    f"add {value!r} to rejection.error_types"
                    if isinstance(value, str)
                    else "set rejection.type_field and rejection.error_types to the frame's"
                )
                why = f"has {rej.type_field!r} = {value!r}, not one of rejection.error_types"
            outcome = rejected.failure if rejected is not None else "no verdict"
            self.add(
                "rejection",
                key,
                f"the rejection is not recognised as an error frame (it {why}); sessions "
                f"refused this way are told only by the close ({outcome}), and mid-session "
                f"such frames are {taxonomy.PROTOCOL_ERROR}s",
                fix,
            )
            return
        if rejected.failure != taxonomy.AUTH_REJECTED:
            self.add(
                "rejection",
                "rejection.auth_error_codes",
                f"the rejection's {rej.error_code_field!r} is {rejected.error_code!r}, not one "
                f"of rejection.auth_error_codes ({', '.join(rej.auth_error_codes)}), so a bad "
                f"token counts as {rejected.failure}, not {taxonomy.AUTH_REJECTED}",
                f'add "{rejected.error_code}" to rejection.auth_error_codes, or set it to [] '
                "(every error frame before the ack means not authenticated)",
            )


def dry_run(profile: Profile) -> DryRunReport:
    """Feed the profile's example frames (or synthesised ones) through the client, sans I/O."""
    return _DryRun(profile).run()
