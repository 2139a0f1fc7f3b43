"""The sans-I/O client session: bytes and times in, events and bytes to send out."""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload import taxonomy
from wsload.config.profile import load_profile
from wsload.protocol.codec import CodecError, JsonTextCodec
from wsload.protocol.events import (
    Acked,
    Closed,
    Duplicate,
    Foreign,
    Pong,
    ProtocolError,
    ServerError,
    Stray,
    TurnEnded,
    Upgraded,
    UpgradeFailed,
)
from wsload.protocol.frames import CLOSE, PING, PONG, TEXT
from wsload.protocol.session import AWAITING_ACK, CLOSED, OPEN, ClientSession
from wsload.protocol.tracker import FinishedTurns, TurnTracker
from wsload.protocol.upgrade import accept_for, build_request, parse_ws_url

PROFILE = load_profile()
ENDPOINT = parse_ws_url("ws://127.0.0.1:8765/ws")
ACK = {"type": "connection_established", "data": {"user_id": "alice"}}
T0 = 100.0  # when the request went out


# server side ---------------------------------------------------------------------------
def frame(payload: bytes | str, opcode: int = TEXT, *, fin: bool = True) -> bytes:
    """An unmasked server frame."""
    data = payload.encode() if isinstance(payload, str) else payload
    n = len(data)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        return bytes((first, n)) + data
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + data
    return struct.pack("!BBQ", first, 127, n) + data


def event(obj: dict[str, Any]) -> bytes:
    return frame(json.dumps(obj, separators=(",", ":")))


def close(code: int, reason: str = "") -> bytes:
    return frame(struct.pack("!H", code) + reason.encode(), CLOSE)


def answer_101(session: ClientSession, extra: str = "") -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_for(session.request.key)}\r\n{extra}\r\n"
    ).encode()


def unmask(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each masked client frame in ``data``."""
    out = []
    while data:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        assert data[1] & 0x80, "a client frame must be masked"
        head = 2
        if n == 126:
            n, head = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(data[2:10], "big"), 10
        key, body = data[head : head + 4], data[head + 4 : head + 4 + n]
        out.append((opcode, bytes(b ^ key[i % 4] for i, b in enumerate(body))))
        data = data[head + 4 + n :]
    return out


# client side ---------------------------------------------------------------------------
def new_session(profile=PROFILE, **kwargs: Any) -> ClientSession:
    session = ClientSession(profile, build_request(ENDPOINT), **kwargs)
    session.request_sent(T0)
    return session


def acked_session(**kwargs: Any) -> ClientSession:
    session = new_session(expected_subject="alice", **kwargs)
    events = session.receive_data(answer_101(session) + event(ACK), T0 + 0.01)
    assert [type(e) for e in events] == [Upgraded, Acked] and session.state == OPEN
    return session


def tracker(at: float, thread_id: str | None = "t1", user_id: str | None = "alice"):
    return TurnTracker(
        PROFILE.events,
        PROFILE.grammar,
        sent_at=at,
        user_id=user_id,
        thread_id=thread_id,
        timeout_s=60,
        event_timeout_s=30,
    )


def turn_events(run: str = "r1", thread: str = "t1", user: str = "alice") -> list[bytes]:
    names = ["agent_started", "agent_thinking", "agent_completed"]
    return [event({"type": n, "run_id": run, "thread_id": thread, "user_id": user}) for n in names]


def kinds(events) -> list[type]:
    return [type(e) for e in events]


# the upgrade and the ack ---------------------------------------------------------------
def test_an_ack_in_the_101s_segment_is_taken_at_the_101s_arrival():
    session = new_session(expected_subject="alice")
    assert session.state == "connecting" and session.deadline is None
    upgraded, acked = session.receive_data(answer_101(session) + event(ACK), T0 + 0.05)
    assert (upgraded.at, acked.at, acked.auth_ms) == (T0 + 0.05, T0 + 0.05, 0.0)
    assert (acked.user_id, acked.mismatch, session.user_id) == ("alice", None, "alice")
    assert acked.message == ACK and session.auth_ms == 0.0 and session.open


def test_the_101_may_come_in_pieces_and_the_ack_later():
    session = new_session()
    data = answer_101(session, "Sec-WebSocket-Protocol: jwt-auth\r\n")
    session.offered = ("jwt-auth", "jwt-auth.x")
    assert session.receive_data(data[:10], T0 + 0.01) == []
    (upgraded,) = session.receive_data(data[10:], T0 + 0.02)
    assert upgraded.response.subprotocol == "jwt-auth" and session.state == AWAITING_ACK
    assert session.deadline == pytest.approx(T0 + 0.02 + PROFILE.ack.timeout_s)
    (acked,) = session.receive_data(event(ACK), T0 + 0.05)
    assert acked.auth_ms == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("answer", "failure", "status"),
    [
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", "http_403", 403),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", taxonomy.INVALID_HTTP, None),
        (
            b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
            taxonomy.INVALID_HTTP,
            101,
        ),
    ],
)
def test_a_bad_answer_is_an_upgrade_failure(answer, failure, status):
    session = new_session()
    (failed,) = session.receive_data(answer, T0 + 0.01)
    assert type(failed) is UpgradeFailed and (failed.failure, failed.status) == (failure, status)
    assert session.state == CLOSED


def test_a_close_before_or_inside_the_head_is_reset_or_invalid_http():
    (gone,) = new_session().receive_eof(T0 + 1)
    assert gone.failure == taxonomy.RESET
    session = new_session()
    session.receive_data(b"HTTP/1.1 10", T0 + 0.1)
    (cut,) = session.receive_eof(T0 + 1)
    assert cut.failure == taxonomy.INVALID_HTTP and "partial" in cut.detail


def test_a_head_without_end_is_invalid_http():
    session = new_session()
    (failed,) = session.receive_data(b"HTTP/1.1 101 x\r\n" + b"X: y\r\n" * 12000, T0)
    assert failed.failure == taxonomy.INVALID_HTTP and "64 KiB" in failed.detail


def test_a_rejection_is_the_error_frame_then_the_policy_close():
    session = new_session()
    error = {"type": "error_message", "error_code": "AUTH_FAILED", "message": "bad token"}
    session.receive_data(answer_101(session), T0 + 0.01)
    assert session.receive_data(event(error), T0 + 0.02) == []
    assert session.deadline == pytest.approx(T0 + 0.02 + 1.0)  # the close gets a short while
    (rejected,) = session.receive_data(close(1008, "auth"), T0 + 0.03)
    assert (rejected.failure, rejected.close_code, rejected.error_code) == (
        taxonomy.AUTH_REJECTED,
        1008,
        "AUTH_FAILED",
    )
    assert rejected.auth_ms == pytest.approx(20.0)
    assert "error frame AUTH_FAILED, then closed 1008" in rejected.detail
    assert unmask(session.data_to_send()) == [(CLOSE, struct.pack("!H", 1000))]
    assert session.data_to_send() == b"" and session.state == CLOSED


def test_an_error_frame_without_its_close_times_out_with_its_code():
    session = new_session()
    session.receive_data(answer_101(session), T0)
    session.receive_data(event({"type": "error_message", "error_code": "AUTH_FAILED"}), T0 + 0.5)
    assert session.timeout(T0 + 1.4) == []
    (rejected,) = session.timeout(T0 + 1.5)
    assert (rejected.failure, rejected.error_code) == (taxonomy.AUTH_TIMEOUT, "AUTH_FAILED")


@pytest.mark.parametrize(
    ("before", "code", "failure"),
    [
        (None, 1008, taxonomy.AUTH_REJECTED),
        (None, 4000, "closed_4000"),
        ("CONNECTION_LIMIT", 1013, "closed_1013"),
        ("AUTH_FAILED", 1011, taxonomy.AUTH_REJECTED),
    ],
)
def test_a_close_before_the_ack_is_named_by_error_code_and_close_code(before, code, failure):
    session = new_session()
    data = answer_101(session)
    if before:
        data += event({"type": "error_message", "error_code": before})
    _, rejected = session.receive_data(data + close(code), T0 + 0.01)
    assert (rejected.failure, rejected.close_code) == (failure, code)


def test_a_connection_lost_before_the_ack_is_closed_1006():
    session = new_session()
    session.receive_data(answer_101(session), T0 + 0.01)
    (rejected,) = session.receive_eof(T0 + 0.02)
    assert (rejected.failure, rejected.close_code) == ("closed_1006", 1006)


def test_no_ack_in_time_is_an_auth_timeout():
    session = new_session(ack_timeout_s=2.0)
    session.receive_data(answer_101(session), T0 + 0.01)
    assert session.timeout(T0 + 2.0) == []
    (rejected,) = session.timeout(T0 + 2.02)
    assert rejected.failure == taxonomy.AUTH_TIMEOUT and rejected.detail == "no ack in 2 s"
    assert rejected.auth_ms == pytest.approx(2010.0) and session.state == CLOSED


def test_an_ack_naming_someone_else_is_an_identity_mismatch_on_a_working_session():
    session = new_session(expected_subject="bob")
    _, acked = session.receive_data(answer_101(session) + event(ACK), T0)
    assert acked.mismatch == "acked as user 'alice', token subject is 'bob'"
    assert session.open and session.user_id == "alice"


def test_before_the_ack_junk_text_is_a_protocol_error_and_binary_is_ignored():
    session = new_session()
    data = answer_101(session) + frame(b"\x00\x01", 0x2)
    assert kinds(session.receive_data(data, T0)) == [Upgraded]
    (rejected,) = session.receive_data(frame("not json"), T0 + 0.01)
    assert rejected.failure == taxonomy.PROTOCOL_ERROR and "not JSON" in rejected.detail
    session = new_session()
    _, rejected = session.receive_data(answer_101(session) + frame("[1]"), T0)
    assert "not a JSON object" in rejected.detail


def test_a_profile_without_an_ack_is_open_at_the_101():
    profile = dataclasses.replace(PROFILE, ack=dataclasses.replace(PROFILE.ack, required=False))
    session = new_session(profile)
    assert kinds(session.receive_data(answer_101(session), T0 + 0.01)) == [Upgraded]
    assert session.open and session.auth_ms == 0.0 and session.deadline is None


# sorting every message of an open session ----------------------------------------------
def test_a_turn_is_fed_to_its_tracker_and_its_end_reported():
    session = acked_session()
    turn = tracker(T0 + 1)
    session.begin_turn(turn)
    started, thinking, completed = turn_events()
    assert session.receive_data(started + thinking, T0 + 1.1) == []
    (ended,) = session.receive_data(completed, T0 + 1.2)
    assert type(ended) is TurnEnded and ended.tracker is turn and ended.at == T0 + 1.2
    result = turn.result()
    assert result.ok and result.ttfe_ms == pytest.approx(100.0)
    assert result.e2e_ms == pytest.approx(200.0)


def test_events_after_the_turn_ended_are_duplicates_even_in_the_next_turn():
    session = acked_session()
    session.begin_turn(tracker(T0 + 1))
    session.receive_data(b"".join(turn_events("r1")), T0 + 1.1)
    session.begin_turn(tracker(T0 + 2))
    (dup,) = session.receive_data(turn_events("r1")[2], T0 + 2.1)
    assert type(dup) is Duplicate and dup.detail == "agent_completed after its turn ended (run r1)"


def test_a_repeated_frame_without_run_id_is_a_duplicate():
    session = acked_session()
    session.begin_turn(tracker(T0 + 1, thread_id=None, user_id=None))
    frames = [event({"type": n}) for n in ("agent_started", "agent_thinking", "agent_completed")]
    session.receive_data(b"".join(frames), T0 + 1.1)
    (dup,) = session.receive_data(frames[2], T0 + 1.2)
    assert dup.detail.endswith("(the same frame again)")


def test_the_user_memory_of_finished_turns_spans_sessions():
    finished = FinishedTurns(PROFILE.events, PROFILE.grammar)
    first = acked_session(finished=finished)
    first.begin_turn(tracker(T0 + 1))
    first.receive_data(b"".join(turn_events("r9")), T0 + 1.1)
    second = acked_session(finished=finished)
    assert kinds(second.receive_data(turn_events("r9")[2], T0 + 2)) == [Duplicate]


def test_between_turns_our_events_are_strays_and_others_are_foreign():
    session = acked_session()
    session.thread_id = "t1"
    (mine,) = session.receive_data(turn_events(thread="t1")[0], T0 + 1)
    assert type(mine) is Stray and mine.name == "agent_started"
    (other_user,) = session.receive_data(turn_events(user="mallory")[0], T0 + 1)
    assert type(other_user) is Foreign and "user_id is not ours" in other_user.detail
    (other_thread,) = session.receive_data(turn_events(thread="t2")[0], T0 + 1)
    assert type(other_thread) is Foreign and "thread_id is not ours" in other_thread.detail
    assert session.receive_data(event({"type": "heartbeat"}), T0 + 1) == []


def test_inside_a_turn_someone_elses_event_fails_the_turn():
    session = acked_session()
    turn = tracker(T0 + 1)
    session.begin_turn(turn)
    assert session.receive_data(turn_events(user="mallory")[0], T0 + 1.1) == []
    assert turn.result().failure == taxonomy.FOREIGN_EVENT


@pytest.mark.parametrize(
    ("data", "kind", "detail"),
    [
        (frame("nope"), ProtocolError, "a text frame that is not JSON"),
        (frame("[1,2]"), ProtocolError, "a text frame that is not a JSON object"),
        (event({"data": 1}), ProtocolError, "an event without a string 'type' field"),
        (event({"type": 7}), ProtocolError, "an event without a string 'type' field"),
        (event({"type": "x" * 80}), ProtocolError, f"an event of unknown type {'x' * 40!r}"),
        (frame(b"\x01", 0x2), ProtocolError, "a binary frame where JSON text was expected"),
        (
            event({"type": "error_message", "error_code": "RATE_LIMIT"}),
            ServerError,
            "error_message RATE_LIMIT",
        ),
    ],
)
def test_what_the_profile_does_not_allow_is_named_and_the_session_goes_on(data, kind, detail):
    session = acked_session()
    (found,) = session.receive_data(data, T0 + 1)
    assert type(found) is kind and found.detail == detail and session.open


def test_a_pong_is_timed_from_its_ping_and_only_then():
    session = acked_session()
    assert session.receive_data(event({"type": "pong"}), T0 + 1) == []  # no ping out
    sent = session.ping(T0 + 2)
    assert unmask(sent) == [(TEXT, b'{"type":"ping"}')]
    (pong,) = session.receive_data(event({"type": "pong"}), T0 + 2.015)
    assert type(pong) is Pong and pong.ms == pytest.approx(15.0)
    assert session.receive_data(event({"type": "pong"}), T0 + 3) == []  # answered once


def test_a_pong_stamped_before_its_ping_took_no_time():
    session = acked_session()
    session.ping(T0 + 5)
    (pong,) = session.receive_data(event({"type": "pong"}), T0 + 4.999)
    assert pong.ms == 0.0


def test_a_cancelled_ping_has_no_pong():
    session = acked_session()
    session.ping(T0 + 1)
    session.cancel_ping()
    assert session.receive_data(event({"type": "pong"}), T0 + 2) == []


def test_control_pings_are_answered_with_their_payload_and_pongs_ignored():
    session = acked_session()
    assert session.receive_data(frame(b"abc", PING) + frame(b"x", PONG), T0 + 1) == []
    assert unmask(session.data_to_send()) == [(PONG, b"abc")]


# closing ---------------------------------------------------------------------------------
def test_the_servers_close_is_answered_and_reported():
    session = acked_session()
    (closed,) = session.receive_data(close(1001, "going away") + event(ACK), T0 + 1)
    assert (closed.code, closed.reason, closed.violation) == (1001, "going away", None)
    assert unmask(session.data_to_send()) == [(CLOSE, struct.pack("!H", 1000))]
    assert session.receive_data(event(ACK), T0 + 2) == [] and session.receive_eof(T0 + 2) == []


def test_our_close_is_sent_once_and_the_servers_answer_not_answered_again():
    session = acked_session()
    assert unmask(session.close(1000)) == [(CLOSE, struct.pack("!H", 1000))]
    assert session.close(1000) == b""
    (closed,) = session.receive_data(close(1000), T0 + 1)
    assert closed.code == 1000 and session.data_to_send() == b""
    assert session.close() == b""


def test_a_lost_link_is_1006_and_an_abort_ends_the_session_quietly():
    session = acked_session()
    (lost,) = session.receive_eof(T0 + 1)
    assert (lost.code, lost.reason) == (1006, "connection lost")
    session = acked_session()
    session.abort(T0 + 1, "no pong")
    assert session.receive_eof(T0 + 2) == [] and session.close_reason == "no pong"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes((0x81, 0x81, 1, 2, 3, 4, 5)), 1002),  # a masked server frame
        (bytes((0xC1, 1)) + b"x", 1002),  # RSV1 without an extension
        (frame(b"\xff\xfe"), 1007),  # text that is not UTF-8
        (frame(b"x" * 70000), 1009),  # over the limit
    ],
)
def test_a_framing_violation_is_a_protocol_error_then_a_close_with_its_code(data, code):
    session = acked_session(max_message_bytes=65536)
    error, closed = session.receive_data(data, T0 + 1)
    assert type(error) is ProtocolError and error.detail.startswith(f"closed {code}: ")
    assert type(closed) is Closed and closed.code == code and closed.violation
    assert unmask(session.data_to_send()) == [(CLOSE, struct.pack("!H", code))]


def test_a_violation_before_the_ack_is_a_close_before_the_ack():
    session = new_session()
    _, rejected = session.receive_data(answer_101(session) + bytes((0xC1, 1)) + b"x", T0)
    assert (rejected.failure, rejected.close_code) == ("closed_1002", 1002)


def test_sent_messages_are_masked_text_frames():
    session = acked_session()
    assert unmask(session.send_text('{"a":"é"}')) == [(TEXT, '{"a":"é"}'.encode())]
    assert unmask(session.send_message({"type": "refresh"})) == [(TEXT, b'{"type":"refresh"}')]


# one stream, however it is cut, and time that never runs backwards -----------------------
def _stream(session: ClientSession) -> bytes:
    started, thinking, completed = turn_events("r1")
    return (
        answer_101(session)
        + event(ACK)
        + frame(b"p", PING)
        + started
        + frame(b"{bad")
        + thinking
        + event({"type": "heartbeat"})
        + completed
        + completed  # the terminal event again: a duplicate
        + event({"type": "agent_started", "user_id": "mallory"})
        + event({"type": "error_message", "error_code": "E"})
        + frame(b"\x00", 0x2)
        + frame("frag", TEXT, fin=False)
        + frame("mented", 0x0, fin=False)
        + frame(" text", 0x0)
        + close(1000, "bye")
    )


def _summary(events) -> list[tuple[Any, ...]]:
    out = []
    for e in events:
        fields = {k: getattr(e, k) for k in e.__slots__ if k not in ("at", "response", "tracker")}
        out.append((type(e).__name__, tuple(sorted(fields.items(), key=str))))
    return out


def _run(cuts: list[int], times: list[float] | None = None):
    session = new_session(expected_subject="alice")
    session.thread_id = "t1"
    session.begin_turn(tracker(T0, thread_id="t1"))
    stream = _stream(session)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    events, sent = [], b""
    for index, (a, b) in enumerate(itertools.pairwise(points)):
        at = times[index % len(times)] if times else T0 + 0.001 * index
        events += session.receive_data(stream[a:b], at)
        sent += session.data_to_send()
    return events, sent, session


WHOLE, WHOLE_SENT, _ = _run([], [T0 + 0.5])


def test_the_stream_sorts_into_every_kind_of_event():
    assert [name for name, _ in _summary(WHOLE)] == [
        "Upgraded",
        "Acked",
        "ProtocolError",
        "TurnEnded",
        "Duplicate",
        "Foreign",
        "ServerError",
        "ProtocolError",
        "ProtocolError",  # "fragmented text" is not JSON either: reassembled first
        "Closed",
    ]
    assert unmask(WHOLE_SENT) == [(PONG, b"p"), (CLOSE, struct.pack("!H", 1000))]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_cut_of_the_stream_gives_the_same_events_and_replies(cuts):
    events, sent, _ = _run(cuts, [T0 + 0.5])  # one arrival time: only the cuts differ
    assert _summary(events) == _summary(WHOLE)
    assert unmask(sent) == unmask(WHOLE_SENT)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=3, max_size=40),
    st.lists(st.floats(T0 - 50, T0 + 50), min_size=1, max_size=40),
)
def test_stamps_never_go_backwards_nor_before_the_request(cuts, times):
    events, _, session = _run(cuts, times)
    stamps = [e.at for e in events]
    assert stamps == sorted(stamps) and all(at >= T0 for at in stamps)
    acked = next(e for e in events if type(e) is Acked)
    assert acked.auth_ms >= 0
    assert session.turn.result().ttfe_ms >= 0


# the codec seam --------------------------------------------------------------------------
class EngineIoCodec:
    """A sketch of Socket.IO over Engine.IO, enough to show a session needs no copy."""

    def __init__(self) -> None:
        self._replies: list[str] = []
        self.json = JsonTextCodec()

    def decode_text(self, text: str):
        if text == "2":  # an Engine.IO ping: answered by the transport, no event
            self._replies.append("3")
            return None
        if not text.startswith("42"):
            raise CodecError("not a Socket.IO event packet")
        name, body = json.loads(text[2:])
        return name, {"type": name, **body}

    def decode_binary(self, data: bytes):
        raise CodecError("binary")

    def encode(self, message: Any) -> str:
        return "42" + json.dumps(["message", message])

    def wrap(self, payload: str) -> str:
        return "42" + json.dumps(["message", json.loads(payload)])

    def replies(self) -> list[str]:
        replies, self._replies = self._replies, []
        return replies


def test_another_codec_drives_the_same_session():
    session = new_session(expected_subject="alice", codec=EngineIoCodec())
    ack = "42" + json.dumps(["connection_established", {"data": {"user_id": "alice"}}])
    _, acked = session.receive_data(answer_101(session) + frame(ack), T0)
    assert type(acked) is Acked and acked.user_id == "alice"
    turn = tracker(T0 + 1, thread_id=None, user_id=None)
    session.begin_turn(turn)
    packets = [
        frame("42" + json.dumps([n, {"run_id": "r"}]))
        for n in ("agent_started", "agent_thinking", "agent_completed")
    ]
    events = session.receive_data(frame("2") + b"".join(packets), T0 + 1.1)
    assert kinds(events) == [TurnEnded] and turn.result().ok
    assert unmask(session.data_to_send()) == [(TEXT, b"3")]  # the codec's own answer
    assert unmask(session.send_text('{"x":1}')) == [(TEXT, b'42["message", {"x": 1}]')]


# pong and error frames typed in a field of their own --------------------------------------
def own_fields_profile(pong_field: str = "type", rejection_field: str = "type"):
    events = dataclasses.replace(PROFILE.events, type_field="event")
    heartbeat = dataclasses.replace(PROFILE.heartbeat, pong_type_field=pong_field)
    rejection = dataclasses.replace(PROFILE.rejection, type_field=rejection_field)
    return dataclasses.replace(PROFILE, events=events, heartbeat=heartbeat, rejection=rejection)


def test_a_pong_typed_in_its_own_field_times_the_ping():
    session = acked_session(profile=own_fields_profile())
    session.ping(T0 + 1.0)
    (pong,) = session.receive_data(event({"type": "pong"}), T0 + 1.25)
    assert isinstance(pong, Pong) and pong.ms == pytest.approx(250.0)
    assert session.receive_data(event({"type": "pong"}), T0 + 1.5) == []  # late: a heartbeat
    same = acked_session(profile=own_fields_profile(pong_field="event"))
    same.ping(T0 + 1.0)
    (error,) = same.receive_data(event({"type": "pong"}), T0 + 1.25)
    assert isinstance(error, ProtocolError) and "'event'" in error.detail


def test_an_error_frame_typed_in_its_own_field_is_a_server_error_and_a_rejection():
    session = acked_session(profile=own_fields_profile())
    (error,) = session.receive_data(event({"type": "error_message", "error_code": "X"}), T0 + 1)
    assert isinstance(error, ServerError) and "error_message X" in error.detail
    refused = new_session(profile=own_fields_profile(), expected_subject="alice")
    data = answer_101(refused) + event({"type": "error_message", "error_code": "AUTH_FAILED"})
    got = refused.receive_data(data + close(1008), T0 + 0.01)
    assert got[-1].failure == taxonomy.AUTH_REJECTED and got[-1].error_code == "AUTH_FAILED"
