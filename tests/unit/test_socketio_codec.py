"""Socket.IO (Engine.IO v4) under the sans-I/O session: packets in, events and answers out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from wsload import taxonomy
from wsload.config.profile import ProfileError, load_profile
from wsload.protocol.codec import CodecError
from wsload.protocol.events import Acked, Rejected, TurnEnded, Upgraded
from wsload.protocol.session import OPEN, ClientSession
from wsload.protocol.socketio import (
    PLAIN_JSON_HINT,
    SocketIOCodec,
    connect_auth,
    settings_for,
)
from wsload.protocol.tracker import TurnTracker, span_name
from wsload.protocol.upgrade import accept_for, build_request, parse_ws_url

T0 = 100.0  # when the request went out

DATA = Path(__file__).resolve().parents[1] / "data"
PROFILE = load_profile(DATA / "socketio_backend.toml")
CHAINLIT = load_profile("chainlit")
OPEN_PACKET = '0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000}'


def frame(text: str) -> bytes:
    """An unmasked server text frame (short)."""
    data = text.encode()
    return bytes((0x81, len(data))) + data if len(data) < 126 else b""


def answer_101(session: ClientSession) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_for(session.request.key)}\r\n\r\n"
    ).encode()


def unmask(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each masked client frame (short ones) in ``data``."""
    out = []
    while data:
        n, key = data[1] & 0x7F, data[2:6]
        out.append((data[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data[6 : 6 + n]))))
        data = data[6 + n :]
    return out


def codec(profile=PROFILE, auth=None, **kwargs) -> SocketIOCodec:
    return SocketIOCodec(settings_for(profile), auth, **kwargs)


def session_with(profile=PROFILE, auth=None, **kwargs) -> ClientSession:
    url = parse_ws_url("ws://127.0.0.1:1/socket.io/?EIO=4&transport=websocket")
    session = ClientSession(profile, build_request(url), codec=codec(profile, auth), **kwargs)
    session.request_sent(T0)
    return session


def sent_texts(session: ClientSession) -> list[str]:
    return [payload.decode() for _, payload in unmask(session.data_to_send())]


def test_the_open_packet_is_answered_with_the_connect_of_the_namespace_and_its_auth():
    c = codec(auth={"token": "T"})
    assert c.decode_text(OPEN_PACKET) is None
    assert c.replies() == ['40/chat,{"token":"T"}'] and c.replies() == []
    assert c.ping_deadline_s == 45.0


def test_server_pings_are_answered_and_counted():
    c = codec()
    assert c.decode_text("2") is None and c.decode_text("2") is None
    assert c.replies() == ["3", "3"] and c.pings == 2


def test_an_event_is_its_name_with_its_data_and_other_namespaces_are_not_ours():
    c = codec()
    name, event = c.decode_text('42/chat,["agent_started",{"run_id":"r1","type":"x"}]')
    assert name == "agent_started"
    assert event == {"run_id": "r1", "type": "x", "event": "agent_started"}
    assert c.decode_text('42["agent_started",{"run_id":"r1"}]') is None  # namespace "/"
    assert c.decode_text('43/chat,7["ok"]') is None  # an ack of an emit: no event
    assert c.decode_text("6") is None and c.replies() == []  # a noop
    assert c.decode_text('42/chat,["note","plain text"]')[1] == {
        "data": "plain text",
        "event": "note",
    }


def test_a_field_of_the_data_refines_the_event_type():
    c = codec(CHAINLIT)
    name, event = c.decode_text('42["new_message",{"id":"s1","type":"tool"}]')
    assert name == "new_message:tool" and event["event"] == "new_message:tool"
    assert c.decode_text('42["stream_token",{"id":"s1","token":"a"}]')[0] == "stream_token"
    assert span_name("new_message:tool", "update_message:tool") == "tool"


def test_binary_events_are_classified_and_their_attachments_taken_not_crashed_on():
    c = codec()
    name, _ = c.decode_text('451-/chat,["upload",{"_placeholder":true,"num":0}]')
    assert name == "upload"
    assert c.decode_binary(b"\x00\x01") is None  # its attachment
    with pytest.raises(CodecError, match="binary message"):
        c.decode_binary(b"\x00\x01")


def test_json_text_where_packets_belong_says_the_server_is_no_socketio_server():
    with pytest.raises(CodecError) as info:
        codec().decode_text('{"type":"error_message","error_code":"AUTH_FAILED"}')
    assert info.value.detail == PLAIN_JSON_HINT
    with pytest.raises(CodecError, match=r"not an Engine\.IO packet"):
        codec().decode_text("hello")


def test_a_polling_open_probes_then_upgrades_then_connects():
    c = codec(auth=None, open_packet={"sid": "e1", "pingInterval": 100, "pingTimeout": 50})
    assert c.replies() == ["2probe"]
    assert c.decode_text("3probe") is None
    assert c.replies() == ["5", "40/chat,"]
    assert c.ping_deadline_s == pytest.approx(0.15)


def test_the_chat_message_is_an_emit_of_the_profiles_event():
    c = codec()
    assert c.wrap('{"content":"hi"}') == '42/chat,["client_message",{"content":"hi"}]'
    assert json.loads(codec(CHAINLIT).encode({"a": 1})[2:]) == ["client_message", {"a": 1}]


def test_connect_auth_fills_token_a_fresh_session_id_and_the_subject():
    profile = dataclasses.replace(
        PROFILE,
        transport=dataclasses.replace(
            PROFILE.transport, connect_auth={"token": "{token}", "s": "{session_id}", "u": "{sub}"}
        ),
    )
    one, two = connect_auth(profile, "T", "alice"), connect_auth(profile, "T", "alice")
    assert one["token"] == "T" and one["u"] == "alice" and one["s"] != two["s"]
    assert connect_auth(CHAINLIT, None)["clientType"] == "webapp"


def test_a_session_is_acked_by_the_profiles_event_after_the_connect():
    session = session_with(auth={"token": "T"}, expected_subject="alice")
    events = session.receive_data(answer_101(session) + frame(OPEN_PACKET), T0 + 0.01)
    assert [type(e) for e in events] == [Upgraded]
    assert sent_texts(session) == ['40/chat,{"token":"T"}']
    events = session.receive_data(
        frame('40/chat,{"sid":"s1"}') + frame('42/chat,["session",{"user_id":"alice"}]'),
        T0 + 0.02,
    )
    assert [type(e) for e in events] == [Acked] and session.state == OPEN
    assert session.user_id == "alice" and events[0].mismatch is None


def test_a_turn_is_judged_on_events_inside_socketio_packets():
    session = session_with()
    session.receive_data(answer_101(session) + frame(OPEN_PACKET), T0)
    session.receive_data(frame('42/chat,["session",{"user_id":"alice"}]'), T0)
    tracker = TurnTracker(
        PROFILE.events, PROFILE.grammar, sent_at=T0, user_id="alice", thread_id="t1",
        timeout_s=5, event_timeout_s=5,
    )  # fmt: skip
    session.begin_turn(tracker)
    ids = '"user_id":"alice","thread_id":"t1","run_id":"r1"'
    names = ("agent_started", "agent_thinking", "tool_executing", "tool_completed")
    out = []
    for i, name in enumerate((*names, "agent_completed")):
        out += session.receive_data(frame(f'42/chat,["{name}",{{{ids}}}]'), T0 + 0.01 * (i + 1))
    session.receive_data(frame("2"), T0 + 1)
    assert [type(e) for e in out] == [TurnEnded]
    result = tracker.result()
    assert result.ok and result.spans_ms == [("tool", pytest.approx(10.0))]
    assert sent_texts(session)[-1] == "3"  # the ping answered


@pytest.mark.parametrize(
    ("message", "failure"),
    [
        ('{"message":"authentication failed"}', taxonomy.AUTH_REJECTED),
        ('{"message":"Unable to connect"}', taxonomy.NAMESPACE_REFUSED),
        ('"Invalid namespace"', taxonomy.NAMESPACE_REFUSED),
    ],
)
def test_a_refused_connect_is_a_rejection_at_once_named_by_its_message(message, failure):
    session = session_with()
    session.receive_data(answer_101(session) + frame(OPEN_PACKET), T0)
    events = session.receive_data(frame(f"44/chat,{message}"), T0 + 0.005)
    assert [type(e) for e in events] == [Rejected] and events[0].failure == failure
    assert events[0].auth_ms == pytest.approx(5.0)


def test_no_user_in_the_ack_means_no_identity_check():
    session = session_with(CHAINLIT, connect_auth(CHAINLIT, None), expected_subject="alice")
    session.receive_data(answer_101(session) + frame('0{"sid":"e"}'), T0)
    events = session.receive_data(frame('40{"sid":"s"}') + frame('42["task_end",{}]'), T0)
    assert [type(e) for e in events] == [Acked] and events[0].mismatch is None
    connect, emitted = sent_texts(session)
    assert connect.startswith('40{"clientType":"webapp","sessionId":"')
    assert emitted == '42["connection_successful"]'  # what Chainlit's frontend emits


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ('connect_auth = { token = "{tokn}" }', "unknown placeholder {tokn}"),
        ('framing = "xml"', "'xml' is not one of json, socketio"),
        ('namespace = "chat"', "must start with '/'"),
    ],
)
def test_bad_transport_keys_are_refused_naming_the_key(tmp_path, keys, problem):
    path = tmp_path / "p.toml"
    path.write_text(f"[transport]\n{keys}\n")
    with pytest.raises(ProfileError, match="transport") as info:
        load_profile(path)
    assert problem in str(info.value)


def test_the_connect_carrier_needs_socketio_and_a_token_placeholder(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[auth]\ncarrier = "connect"\n')
    with pytest.raises(ProfileError, match=r"auth\.carrier"):
        load_profile(path)
    path.write_text('[auth]\ncarrier = "connect"\n[transport]\nframing = "socketio"\n')
    with pytest.raises(ProfileError, match=r"needs \"\{token\}\""):
        load_profile(path)
