"""A protocol profile inferred from one recorded chat session, with how sure each part is.

The recorded session (the WebSocket on which the page sent the most chat messages) is read
as: upgrade (carrier, subprotocols, origin), the first server message before any chat
message (the ack), client pings and the server's answers (heartbeat), chat messages, and
the server messages between one chat message and the next (one turn each). The turns give
the event vocabulary, the terminal event, the grammar, spans and streamed events; the
other sessions give what a rejection looked like.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from wsload.errors import ConfigError
from wsload.har import auth_infer, socketio, socketio_infer
from wsload.har.chat_infer import infer_chat
from wsload.har.fields import (
    RUN_NAMES,
    THREAD_NAMES,
    USER_NAMES,
    get_path,
    leaves,
    path_named,
    path_of,
)
from wsload.har.grammar_infer import infer_sequence
from wsload.har.messages import Message, json_messages, socketio_messages
from wsload.har.reader import Recording, WebSocketSession
from wsload.har.spans import infer_spans, streamed_events
from wsload.har.turns import (
    Turn,
    answers_to,
    first_turn_only,
    frames_unique,
    is_stray,
    late_trailers,
    split_turns,
    terminal_event,
)

GRAMMAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")
PING_NAMES = ("ping", "heartbeat", "keepalive", "keep_alive")


@dataclass
class Inference:
    """The profile's tables (only what was inferred), examples, corpus, notes and to-dos."""

    profile: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, Any] = field(default_factory=dict)
    corpus: list[str] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (confidence, what)
    todo: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    framing: str = "json"
    host: str = ""  # the recorded server, as --host takes it

    def section(self, name: str) -> dict[str, Any]:
        return self.profile.setdefault(name, {})

    def note(self, confidence: str, text: str) -> None:
        self.notes.append((confidence, text))


def infer(recording: Recording, known: dict[str, set[str]] | None = None) -> Inference:
    """Everything the recording tells about the backend's protocol; ``known``: the profile
    keys this wsload has (keys it lacks are not inferred where they would change others)."""
    out = Inference(secrets=auth_infer.collect_secrets(recording))
    main = _main_session(recording)
    is_sio = socketio.is_socketio(main)
    out.framing = "socketio" if is_sio else "json"
    path = main.path.rstrip("/") if is_sio else main.path
    endpoint = out.section("endpoint")
    endpoint["path"] = path or "/"
    endpoint["origin"] = _header(main, "Origin") or ""
    if agent := _header(main, "User-Agent"):
        endpoint["user_agent"] = agent
    out.host = urlunsplit(urlsplit(main.url)[:2] + ("", "", ""))
    out.note("sure", f"endpoint: {out.host} path {endpoint['path']}")
    auth = auth_infer.infer_carrier(main, recording)
    if is_sio:
        packets = socketio.session_packets(main, recording.http)
        messages = socketio_messages(packets)
        server_field = client_field = socketio_infer.name_key(messages)
        socketio_infer.transport(out, main, recording, packets, auth)
        refining = "subtype_fields" in (known or {}).get("transport", ())
        if refining and (fields := socketio_infer.subtypes(messages)):
            messages = socketio_infer.refined(messages, fields)
            out.section("transport")["subtype_fields"] = fields
            kinds = ", ".join(f"{n} by {f}" for n, f in fields.items())
            out.note("likely", f"events told apart by a field of their data: {kinds}")
    else:
        messages, server_field, client_field = json_messages(main.frames)
    if not is_sio:
        _keep_query(out, main, auth.auth or {})
    out.section("auth").update(auth.auth or {})
    if auth.token:
        out.section("token").update(auth.token)
    for note in auth.notes:
        out.note("sure", note)
    out.todo.extend(auth.todo)
    if not auth.auth and not auth.connect_auth:
        out.note(
            "guess",
            "token: not found in the upgrade (no JWT in a subprotocol, query, "
            "cookie or header, no ticket): the carrier is left at the default",
        )
        out.todo.append(
            "say where the token travels: [auth] carrier (see docs/profiles.md); a HAR saved "
            "'sanitized' has no cookies or authorization headers: save it 'with content'"
        )
    if refresh := auth_infer.refresh_request(recording):
        out.section("auth")["refresh_path"] = refresh
        out.note("sure", f"token refresh: POST {refresh} traded a token for a new one")
    if login := auth_infer.login_request(recording, auth.token_value):
        out.section("auth")["login_path"] = login[1]
        out.note(
            "sure",
            f"login: {login[0]} {login[1]} answered with the token "
            "(credentials not copied: give runs --credentials)",
        )
    out.section("events")["type_field"] = server_field
    _infer_session(out, messages, server_field, client_field, auth, is_sio)
    if is_sio:
        socketio_infer.rejection(out, recording, main)
    else:
        _infer_rejection(out, recording, main, server_field)
    return out


def _keep_query(out: Inference, main: WebSocketSession, auth: dict[str, Any]) -> None:
    """Query parameters of the upgrade that are neither the token nor a secret (an API
    version, say) stay in ``endpoint.path``; wsload adds its token parameter after them."""
    carrier = auth.get("carrier")
    own = {auth.get("query_param") if carrier == "query" else None}
    own.add(auth.get("ticket_param") if carrier == "ticket" else None)
    kept = {
        k: v for k, v in main.query.items() if k not in own and v not in out.secrets and len(k) < 64
    }
    if kept:
        out.profile["endpoint"]["path"] += "?" + urlencode(kept)
        out.note("likely", f"endpoint: its query parameters {', '.join(kept)} kept in the path")


def _header(session: WebSocketSession, name: str) -> str | None:
    return next((v for n, v in session.request_headers if n.lower() == name.lower()), None)


def _main_session(recording: Recording) -> WebSocketSession:
    def chat_count(session: WebSocketSession) -> tuple[int, int]:
        return (session.status == 101 or bool(session.frames), sum(f.sent for f in session.frames))

    best = max(recording.sessions, key=chat_count)
    if not any(f.sent for f in best.frames):
        raise ConfigError(
            f"{recording.source}: no WebSocket of the recording sent a message: no chat turn "
            "to learn the events from",
            fix="record a session in which you send at least one chat message (two or three "
            "make the grammar surer), then export the HAR with content",
        )
    return best


def _infer_session(out, messages, server_field, client_field, auth, is_sio) -> None:
    pings = [m for m in messages if m.sent and _is_ping(m)]
    # The chat message is what the page sent most; anything else it sent before the
    # first one (a subscription, Chainlit's connection_successful) is part of opening.
    names = Counter(m.name for m in messages if m.sent and m not in pings and m.name)
    chat_name = names.most_common(1)[0][0] if names else None
    chats = [m for m in messages if m.sent and m not in pings and m.name == chat_name]
    # Recorded order, not timestamps (a HAR may hold none, or equal ones).
    first = messages.index(chats[0]) if chats else len(messages)
    opening = [m for m in messages[:first] if m.sent and m not in pings]
    if opening:
        socketio_infer.opening_messages(out, opening, is_sio)
    pongs = answers_to(messages, pings)
    before = [m for m in messages[:first] if not m.sent and m not in pongs]
    ack = before[0] if before else None
    ack_user = _infer_ack(out, ack, auth, server_field, is_sio)
    if ack_user is None:  # no ack names the user: the token's subject may be in the events
        ack_user = auth.subject
    if is_sio:
        out.note("sure", "heartbeat: Engine.IO's own pings, answered by the transport")
    else:
        _infer_heartbeat(out, pings, pongs)
    turns = split_turns(messages, chats, pongs)
    outside = [m for m in before[1:]]
    terminal = terminal_event(turns)
    for turn in turns:
        names = [m.name for m in turn.events]
        turn.complete = terminal in names
        if turn.complete:
            cut = names.index(terminal) + 1
            outside.extend(turn.events[cut:])
            turn.events = turn.events[:cut]
    complete = [t for t in turns if t.complete]
    late_trailers(complete, outside)
    for turn in complete:  # a keep-alive sent while the turn ran is no part of it
        stray = [m for m in turn.events if is_stray(m, turn, complete)]
        outside.extend(stray)
        turn.events = [m for m in turn.events if m not in stray]
    if not complete:
        raise ConfigError(
            f"no recorded chat message was answered with a finished turn ({len(turns)} sent)",
            fix="record again and wait for each answer to finish before exporting",
        )
    once = first_turn_only(complete)
    if once:
        outside.extend(m for m in complete[0].events if m.name in once)
        complete[0].events = [m for m in complete[0].events if m.name not in once]
        out.note(
            "likely",
            f"{', '.join(sorted(once))}: only in the first turn, taken as "
            "once per conversation and ignored",
        )
    inside = {m.name for t in complete for m in t.events}
    ignore = sorted({m.name for m in outside if m.name and m.name not in inside})
    errors = sorted(n for n in inside | set(ignore) if n and ("error" in n or "fail" in n))
    events = out.section("events")
    sequences = [[m.name or "?" for m in t.events if m.name not in errors] for t in complete]
    # A name the grammar cannot hold (a space, a leading digit) is allowed anywhere instead.
    odd = sorted({n for s in sequences for n in s if not GRAMMAR_NAME.fullmatch(n)})
    sequences = [[n for n in s if n not in odd] for s in sequences]
    events["sequence"] = infer_sequence([s for s in sequences if s])
    events["terminal"] = [terminal]
    events["error"] = errors
    events["optional"] = odd
    pong_names = {m.name for m in pongs if m.name}
    events["ignore"] = sorted({*ignore, *pong_names} - set(errors))
    spans = infer_spans(sequences)
    events["spans"] = [list(s) for s in spans]
    _infer_ids(out, complete, ack_user, server_field)
    events["frames_are_unique"] = frames_unique(complete)
    infer_chat(out, complete, client_field, is_sio)
    _infer_stream(out, complete)
    confidence = "sure" if len(complete) >= 3 else "likely" if len(complete) == 2 else "guess"
    out.note(
        confidence,
        f"turns: {len(complete)} finished of {len(turns)} recorded; grammar "
        f"{events['sequence']!r}, terminal {terminal!r}"
        + (f", spans {', '.join('/'.join(s) for s in spans)}" if spans else ", no spans")
        + (f", ignored {', '.join(events['ignore'])}" if events["ignore"] else ""),
    )
    if len(complete) < 3:
        out.todo.append(
            f"only {len(complete)} finished turn(s) recorded: which events repeat or are "
            "optional is a guess; record three or more turns, or check events.sequence"
        )
    shown = _example if is_sio else (lambda m, _field: m.raw)
    out.examples["turn"] = [shown(m, server_field) for m in complete[0].events]
    if len(complete) > 1:
        out.examples["next_turn"] = [shown(m, server_field) for m in complete[1].events]
    acked = out.profile.get("ack", {})
    if ack is not None and ack.name and acked.get("required", True) and acked.get("user_id_field"):
        out.examples["ack"] = shown(ack, server_field)
    if pongs:
        out.examples["pong"] = pongs[0].raw


def _is_ping(message: Message) -> bool:
    name = (message.name or message.raw.strip()).lower()
    return name in PING_NAMES


def _example(message: Message, name_key: str) -> str:
    """A Socket.IO event as the profile check reads one: its data, the name under a key."""
    return json.dumps({**message.body, name_key: message.name}, separators=(",", ":"))


def _infer_ack(out, ack: Message | None, auth, server_field, is_sio) -> Any:
    section = out.section("ack")
    if is_sio and (ack is None or not ack.name):
        # Socket.IO's own CONNECT ack (40{sid}) is the event `connect`: it names no user.
        section.update(required=True, match=[{server_field: "connect"}], user_id_field="")
        out.note(
            "likely",
            "ack: the Socket.IO CONNECT ack (no event came before the first "
            "answer); it names no user, so the user is not checked",
        )
        return None
    if ack is None or not ack.name:
        section["required"] = False
        out.note(
            "likely",
            "ack: none (the server sent nothing before the first chat "
            "message): the session is ready when it opens",
        )
        return None
    section["required"] = True
    section["match"] = [{server_field: ack.name}]
    user = None
    path = path_of(ack.body, auth.subject) if auth.subject else None
    if path:
        user = auth.subject
        out.note("sure", f"ack: {ack.name!r}, the user id (the token's subject) at {path!r}")
    else:
        path = path_named(ack.body, USER_NAMES)
        if path:
            user = get_path(ack.body, path)
            out.note("guess", f"ack: {ack.name!r}, the user id probably at {path!r}")
        else:
            out.note("guess", f"ack: {ack.name!r}; it names no user")
            out.todo.append("ack.user_id_field: the ack names no user the recording shows")
    section["user_id_field"] = path or ""  # no user named: not compared
    return user


def _infer_heartbeat(out, pings: list[Message], pongs: list[Message]) -> None:
    if not pings or not pongs:
        out.note(
            "guess",
            "heartbeat: no client ping answered in the recording; the default "
            "ping {type = 'ping'} is kept",
        )
        out.todo.append("heartbeat: no ping/pong recorded: check [heartbeat] ping and pong_type")
        return
    section = out.section("heartbeat")
    section["ping"] = copy.deepcopy(pings[0].body)
    pong = pongs[0]
    field_name = next(
        (k for k, v in pong.body.items() if isinstance(v, str) and "pong" in v.lower()), None
    )
    if field_name:
        section["pong_type_field"] = field_name
        section["pong_type"] = pong.body[field_name]
    if len(pings) > 1:
        gaps = [b.time - a.time for a, b in itertools.pairwise(pings)]
        section["interval_s"] = round(max(1.0, statistics.median(gaps)), 1)
    out.note("sure", f"heartbeat: ping {pings[0].raw} answered by {pong.raw}")


def _infer_ids(out, turns: list[Turn], ack_user: Any, server_field: str) -> None:
    events = out.section("events")
    bodies = [m.body for t in turns for m in t.events]
    user_field = None
    for body in bodies if ack_user is not None else ():
        user_field = user_field or path_of(body, ack_user, top_level=True)
    thread_field = None
    for turn in turns:
        for path, value in leaves(turn.chat.body):
            if isinstance(value, str) and value and "{" not in value:
                found = next(
                    (f for m in turn.events if (f := path_of(m.body, value, top_level=True))),
                    None,
                )
                if (
                    found
                    and found != user_field
                    and path_named({path.rsplit(".", 1)[-1]: 1}, THREAD_NAMES)
                ):
                    thread_field = found
        if thread_field:
            break
    run_field = None
    taken = {user_field, thread_field, server_field}
    candidates = [k for k in turns[0].events[-1].body if k not in taken]
    for key in candidates:
        per_turn = [{str(m.body.get(key)) for m in t.events} for t in turns]
        if all(len(values) == 1 and "None" not in values for values in per_turn):
            firsts = [next(iter(v)) for v in per_turn]
            if len(turns) > 1 and len(set(firsts)) == len(firsts):
                run_field = key
                break
            if len(turns) == 1 and path_named({key: 1}, RUN_NAMES):
                run_field = key
                break
    events["user_id_field"] = user_field or ""
    events["thread_id_field"] = thread_field or ""
    events["run_id_field"] = run_field or ""
    named = ", ".join(
        f"{k} {v!r}"
        for k, v in (("user", user_field), ("thread", thread_field), ("run", run_field))
        if v
    )
    out.note("likely" if named else "guess", f"ids in events: {named or 'none found'}")


def _infer_stream(out, turns: list[Turn]) -> None:
    found = streamed_events([[(m.name or "", m.body) for m in t.events] for t in turns])
    if not found:  # no event of the recording streams: none is taken for a token
        out.profile["stream"] = {"events": []}
        return
    names, text_field = found
    out.profile["stream"] = {"events": names, "text_field": text_field}
    out.note("likely", f"streamed tokens: {', '.join(names)} carry text at {text_field!r}")


def _infer_rejection(out, recording, main, server_field) -> None:
    statuses = sorted({s.status for s in recording.sessions if 400 <= s.status < 600})
    section = out.section("rejection")
    if statuses:
        section["http_statuses"] = sorted({*statuses, 401, 403})
    ack_names = {m.get(server_field) for m in out.profile.get("ack", {}).get("match", [])}
    for session in recording.sessions:
        if session is main or not session.frames:
            continue
        messages, _, _ = json_messages(session.frames)
        received = [m for m in messages if not m.sent]
        sent = [m for m in messages if m.sent]
        if not received or sent or received[0].body.get(server_field) in ack_names:
            continue
        frame = received[0]
        name = frame.body.get(server_field)
        if not isinstance(name, str):
            continue
        section["error_types"] = [name]
        code_field = path_named(
            frame.body, ("error_code", "code", "reason", "error", "status"), top_level=True
        )
        if code_field and code_field != server_field:
            section["error_code_field"] = code_field
            section["auth_error_codes"] = [str(frame.body[code_field])]
        else:
            section["auth_error_codes"] = []
        out.examples["rejection"] = frame.raw
        out.note(
            "sure",
            f"rejection: a refused session got {frame.raw} before it closed "
            "(the HAR does not record close codes: rejection.close_codes kept)",
        )
        return
    if not statuses:
        out.note("guess", "rejection: none recorded; the default rejection keys are kept")
        out.todo.append("rejection: no refused session recorded: check [rejection]")
