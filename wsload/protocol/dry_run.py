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

import struct
from typing import Any

from wsload import taxonomy
from wsload.config.profile import Profile
from wsload.config.profile_warnings import example_object as frame_object
from wsload.config.templates import get_field
from wsload.protocol import events as ev
from wsload.protocol.dry_run_frames import (
    DRY_THREAD,
    DRY_USER,
    ERROR,
    WARNING,
    Clock,
    DryRunReport,
    Finding,
    answer_101,
    example_frames,
    field_holding,
    frame_text,
    open_session,
    server_frame,
    show,
)
from wsload.protocol.frames import CLOSE
from wsload.protocol.session import ClientSession
from wsload.protocol.tracker import TurnTracker


class _DryRun:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.grammar = profile.grammar
        self.clock = Clock()
        self.findings: list[Finding] = []
        self.fed: list[str] = []
        self.frames, found = example_frames(profile, self.grammar)
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
        session = open_session(profile, subject, self.clock)
        if not profile.ack.required:
            session.receive_data(answer_101(session), self.clock.tick())
            self.fed.append("ack: not required, the session opens with the 101")
            return session
        self.fed.append(f"ack ({self.origin('ack')}): {show(frame)}")
        got = session.receive_data(
            answer_101(session) + server_frame(frame_text(frame)), self.clock.tick()
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
        self.fed.append(f"ping, then the pong ({self.origin('pong')}): {show(frame)}")
        session.ping(self.clock.tick())
        got = session.receive_data(server_frame(frame_text(frame)), self.clock.tick())
        if any(isinstance(e, ev.Pong) for e in got):
            return
        obj = frame_object(frame)
        seen = ", ".join(type(e).__name__ for e in got) or "nothing"
        holder = field_holding(obj, {hb.pong_type})
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
            got = session.receive_data(server_frame(frame_text(frame)), self.clock.tick())
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
        shown = show(frame, 60)
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
                holder = field_holding(obj, self.known_names())
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
        self.fed.append(f"rejection ({self.origin('rejection')}): {show(frame)}{closing}")
        session = open_session(profile, DRY_USER, self.clock)
        data = answer_101(session) + server_frame(frame_text(frame))
        if code:
            data += server_frame(struct.pack("!H", code) + b"bad token", CLOSE)
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
            holder = field_holding(obj, frozenset(rej.error_types))
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
