"""Durations whose two ends come from one clock: never negative, however fast the server.

The 101 and the frames after it are stamped alike (the kernel's arrival time where it gives
one, else the read time), and a session's stamps never go backwards, so ``auth`` (101 to
the ack) and ``connect`` cannot come out below zero when the ack follows the 101 at once.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_client import FAST, answer_101, open_as, text_frame

from wsload.net.client import ClientOptions, Connection, not_before
from wsload.protocol.events import Acked, Closed, Stray, Upgraded
from wsload.protocol.session import ClientSession
from wsload.protocol.upgrade import accept_for, build_request, parse_ws_url

ACK = '{"type":"connection_established","data":{"user_id":"alice"}}'
CONNECTIONS = 300


def hold(conn: socket.socket) -> None:
    """Keep the connection until the client is done with it (or the test closes it)."""
    with contextlib.suppress(OSError):
        conn.recv(1)


def ack_with_the_101(conn: socket.socket) -> None:
    """The 101 and the ack in one segment."""
    answer_101(conn, extra=text_frame(ACK))
    hold(conn)


def ack_right_after_the_101(conn: socket.socket) -> None:
    """The 101, then the ack in a segment of its own, with nothing in between."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    answer_101(conn)
    conn.sendall(text_frame(ACK))
    hold(conn)


def timings_of(url, profile, minter, count: int, options: ClientOptions):
    """Open ``count`` sessions one after the other (bounded in time too) and keep timings."""
    seen = []
    deadline = time.monotonic() + 60
    for _ in range(count):
        session = open_as(url, profile, minter, "alice", options=options)
        seen.append((session.kernel_timestamps, session.timings))
        session.abort()
        if time.monotonic() > deadline:
            break
    return seen


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel-stamps", "read-times"])
def test_an_ack_in_the_101s_segment_took_no_time_after_it(raw_server, profile, minter, kernel):
    options = ClientOptions(
        connect_timeout_s=2.0, handshake_timeout_s=2.0, ack_timeout_s=2.0, kernel_timestamps=kernel
    )
    server = raw_server(ack_with_the_101)
    seen = timings_of(server.url, profile, minter, 50, options)
    assert len(seen) == 50
    for stamped, t in seen:
        assert stamped == (kernel and sys.platform.startswith("linux"))
        assert t.auth_ms == 0.0  # stamped with the arrival of the read that brought the 101
        assert t.connect_ms >= 0 and t.upgrade_ms >= 0 and t.tcp_ms >= 0


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel-stamps", "read-times"])
def test_an_ack_right_after_the_101_never_gives_a_negative_auth_time(
    raw_server, profile, minter, kernel
):
    options = ClientOptions(
        connect_timeout_s=2.0, handshake_timeout_s=2.0, ack_timeout_s=2.0, kernel_timestamps=kernel
    )
    server = raw_server(ack_right_after_the_101)
    seen = timings_of(server.url, profile, minter, CONNECTIONS, options)
    assert len(seen) == CONNECTIONS
    negative = [t.auth_ms for _, t in seen if t.auth_ms < 0]
    assert not negative, f"{len(negative)} negative auth times, e.g. {negative[:5]} ms"
    assert all(t.connect_ms >= 0 and t.upgrade_ms >= 0 for _, t in seen)
    assert all(t.connect_ms >= t.upgrade_ms for _, t in seen)
    assert max(t.auth_ms for _, t in seen) < 1000  # a real measurement, not a timeout


def test_the_reference_target_gives_no_negative_auth_or_connect_time(target, profile, minter):
    seen = timings_of(target.url, profile, minter, 100, FAST)
    assert all(t.auth_ms >= 0 and t.connect_ms >= 0 for _, t in seen)


@given(st.floats(-1e6, 1e6), st.lists(st.floats(-1e6, 1e6), max_size=50))
def test_stamps_after_the_floor_never_go_backwards(start, stamps):
    floor, out = start, []
    for at in stamps:
        floor = not_before(floor, at)
        out.append(floor)
    assert all(a <= b for a, b in zip([start, *out], out, strict=False))
    for index, (at, kept) in enumerate(zip(stamps, out, strict=True)):
        assert kept >= at
        earlier = max([start, *stamps[:index]])
        assert kept == (at if at > earlier else earlier)  # a stamp in order is kept as is


def upgraded_session(profile, sock: socket.socket, upgraded: float, leftover: bytes = b""):
    """A connection over ``sock`` whose 101 (and ack, and ``leftover``) came at ``upgraded``."""
    endpoint = parse_ws_url("ws://127.0.0.1:1/ws")
    session = ClientSession(profile, build_request(endpoint))
    session.request_sent(upgraded - 1.0)
    answer = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_for(session.request.key)}\r\n\r\n"
    ).encode()
    events = session.receive_data(answer + text_frame(ACK) + leftover, upgraded)
    return Connection(sock, session, endpoint, None), events  # type: ignore[arg-type]


def test_a_session_never_stamps_a_frame_before_the_101(profile):
    """A read stamped before the 101 (clock conversion jitter) is raised to the 101's time."""
    mine, theirs = socket.socketpair()
    upgraded = time.perf_counter() + 5.0  # pretend the 101 came later than any read can
    conn, events = upgraded_session(profile, mine, upgraded, text_frame('{"type":"agent_started"}'))
    try:
        assert [type(e) for e in events] == [Upgraded, Acked, Stray]
        assert all(e.at == upgraded for e in events) and events[1].auth_ms == 0.0
        theirs.sendall(text_frame('{"type":"agent_thinking"}'))
        (second,) = conn.receive(2.0)
        assert (type(second), second.name) == (Stray, "agent_thinking")
        assert second.at == upgraded
        theirs.close()
        (gone,) = conn.receive(2.0)
        assert type(gone) is Closed and gone.code == 1006 and gone.at >= upgraded
    finally:
        conn.abort()
        theirs.close()


def test_without_the_floor_the_read_time_stands(profile):
    mine, theirs = socket.socketpair()
    before = time.perf_counter()
    conn, _ = upgraded_session(profile, mine, before)
    try:
        time.sleep(0.05)
        theirs.sendall(text_frame('{"type":"agent_started"}'))
        (event,) = conn.receive(2.0)
        assert event.at - before >= 0.05
    finally:
        conn.abort()
        theirs.close()
