"""The timed client against real loopback servers: each connect and auth failure kind."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import time

import pytest

from wsload import taxonomy
from wsload.config.tokens import TokenMinter
from wsload.errors import ConfigError
from wsload.net.client import ClientOptions, ConnectError, connect
from wsload.net.raw_exchange import preflight
from wsload.protocol.carrier import Placement, place
from wsload.protocol.tracker import TurnTracker
from wsload.protocol.upgrade import GUID, parse_head

FAST = ClientOptions(connect_timeout_s=2.0, handshake_timeout_s=0.5, ack_timeout_s=1.0)


def open_as(url, profile, minter, subject="alice", *, carrier=None, token=None, options=FAST):
    token = token if token is not None else minter.mint(subject)
    placement = place(profile.auth, url, token, carrier=carrier)
    return connect(url, profile, placement, expected_subject=subject, options=options)


def failure_of(*args, **kwargs) -> ConnectError:
    with pytest.raises(ConnectError) as info:
        open_as(*args, **kwargs)
    return info.value


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def answer_101(conn: socket.socket, *, accept: str | None = None, extra: bytes = b"") -> None:
    head = parse_head(read_request(conn))
    key = head.header("sec-websocket-key") or ""
    good = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept or good}\r\n\r\n".encode()
        + extra
    )


def text_frame(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 126
    return bytes([0x81, len(data)]) + data


def close_frame(code: int) -> bytes:
    return bytes([0x88, 2]) + struct.pack("!H", code)


def test_a_valid_session_is_timed_and_acked_as_its_subject(target, profile, minter):
    session = open_as(target.url, profile, minter, "alice")
    t = session.timings
    assert session.user_id == "alice" and session.subprotocol == "jwt-auth"
    assert t.connect_ms > 0 and t.auth_ms >= 0 and t.tcp_ms > 0 and t.upgrade_ms > 0
    assert t.connect_ms == pytest.approx(t.dns_ms + t.tcp_ms + t.upgrade_ms, abs=0.01)
    session.close()


@pytest.mark.parametrize("carrier", ["subprotocol", "header", "query", "cookie"])
def test_every_token_carrier_authenticates(target, profile, minter, carrier):
    session = open_as(target.url, profile, minter, f"carrier-{carrier}", carrier=carrier)
    assert session.user_id == f"carrier-{carrier}"
    session.close()


def test_closed_port_is_refused(raw_server, profile, minter):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    err = failure_of(f"ws://127.0.0.1:{port}/ws", profile, minter)
    assert (err.failure, err.phase) == (taxonomy.REFUSED, "connect")
    assert "nothing listens" in err.detail


def test_a_socket_that_never_answers_is_a_handshake_timeout(raw_server, profile, minter):
    server = raw_server(lambda conn: None, accept=False)  # the kernel accepts, nobody answers
    err = failure_of(server.url, profile, minter)
    assert err.failure == taxonomy.HANDSHAKE_TIMEOUT and err.timings.tcp_ms is not None


def test_a_non_http_answer_is_invalid_http(raw_server, profile, minter):
    def ssh_banner(conn):
        read_request(conn)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\nProtocol mismatch.\r\n")
        conn.close()

    err = failure_of(raw_server(ssh_banner).url, profile, minter)
    assert err.failure == taxonomy.INVALID_HTTP


def test_a_wrong_accept_header_is_invalid_http(raw_server, profile, minter):
    server = raw_server(lambda conn: answer_101(conn, accept="d3JvbmcgYWNjZXB0IGtleQ=="))
    err = failure_of(server.url, profile, minter)
    assert err.failure == taxonomy.INVALID_HTTP and "Sec-WebSocket-Accept" in err.detail


def test_a_reset_during_the_handshake_is_reset(raw_server, profile, minter):
    def reset(conn):
        read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    err = failure_of(raw_server(reset).url, profile, minter)
    assert err.failure == taxonomy.RESET


def test_403_at_the_upgrade_is_http_403(target_factory, profile, minter):
    target = target_factory("--reject-at-upgrade", "403")
    other = TokenMinter(profile.token, secret="another-secret-that-is-long-enough-000")
    err = failure_of(target.url, profile, minter, token=other.mint("alice"))
    assert (err.failure, err.http_status, err.phase) == ("http_403", 403, "connect")


def test_a_bad_token_is_rejected_with_an_error_frame_and_1008(target, profile, minter):
    other = TokenMinter(profile.token, secret="another-secret-that-is-long-enough-000")
    err = failure_of(target.url, profile, minter, token=other.mint("alice"))
    assert (err.failure, err.phase) == (taxonomy.AUTH_REJECTED, "auth")
    assert (err.close_code, err.error_code) == (1008, "AUTH_FAILED")
    assert err.timings.connect_ms is not None and err.timings.auth_ms is not None


def test_an_expired_token_is_rejected(target, profile, minter):
    token = minter.mint("alice", now=1_000_000, lifetime_s=60)
    assert failure_of(target.url, profile, minter, token=token).failure == taxonomy.AUTH_REJECTED


def test_a_server_acking_everyone_as_one_user_is_an_identity_mismatch(
    target_factory, profile, minter
):
    target = target_factory("--auth-mode", "demo")
    err = failure_of(target.url, profile, minter, "alice")
    assert err.failure == taxonomy.IDENTITY_MISMATCH and "demo-user-001" in err.detail
    assert err.session is not None and err.session.user_id == "demo-user-001"
    err.session.close()


def test_a_server_that_never_acks_is_an_auth_timeout(target_factory, profile, minter):
    err = failure_of(target_factory("--no-ack").url, profile, minter)
    assert err.failure == taxonomy.AUTH_TIMEOUT and err.timings.auth_ms >= 1000


def test_a_not_ready_server_closing_1011_is_closed_1011(target_factory, profile, minter):
    err = failure_of(target_factory("--not-ready").url, profile, minter)
    assert (err.failure, err.close_code) == ("closed_1011", 1011)


def test_an_ack_sent_with_the_101_is_not_lost(raw_server, profile, minter):
    ack = '{"type":"connection_established","data":{"user_id":"alice"}}'
    server = raw_server(lambda conn: answer_101(conn, extra=text_frame(ack)))
    session = open_as(server.url, profile, minter, "alice")
    assert session.user_id == "alice"
    session.abort()


def test_a_close_without_error_frame_before_the_ack_is_named_by_code(raw_server, profile, minter):
    server = raw_server(lambda conn: answer_101(conn, extra=close_frame(4000)))
    assert failure_of(server.url, profile, minter).failure == "closed_4000"


def test_a_dropped_auth_header_is_caught_in_the_bytes_sent(target, profile, minter):
    token = minter.mint("alice")
    dropped = Placement(target.url, carrier="header", material=f"Bearer {token}")
    with pytest.raises(ConnectError) as info:
        connect(target.url, profile, dropped, expected_subject="alice", options=FAST)
    assert info.value.failure == taxonomy.AUTH_MATERIAL_MISSING
    assert "Authorization" in info.value.detail


def test_preflight_says_nothing_listens_and_how_to_start_a_target():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConfigError) as info:
        preflight(f"ws://127.0.0.1:{port}/ws")
    assert "nothing listens at ws://127.0.0.1" in str(info.value)
    assert "wsload target" in str(info.value)


def test_a_connection_limit_before_the_ack_is_named_by_its_close_not_as_auth(
    target_factory, profile, minter
):
    target = target_factory("--connections-per-user", "1")
    first = open_as(target.url, profile, minter, "limited")
    err = failure_of(target.url, profile, minter, "limited")
    assert (err.failure, err.close_code, err.error_code) == (
        "closed_1013",
        1013,
        "CONNECTION_LIMIT",
    )
    first.close()


def test_receive_times_come_from_the_kernel_not_from_a_late_read(target_factory, profile, minter):
    target = target_factory("--ttfe", "0.05", "--thinking-steps", "1", "--tools", "0")
    for kernel in (True, False):
        options = ClientOptions(ack_timeout_s=2, kernel_timestamps=kernel)
        session = open_as(target.url, profile, minter, f"clock-{kernel}", options=options)
        sent = time.perf_counter()
        tracker = TurnTracker(
            profile.events,
            profile.grammar,
            sent_at=sent,
            user_id=None,
            thread_id=None,
            timeout_s=5,
            event_timeout_s=5,
        )
        session.session.begin_turn(tracker)
        session.send_text('{"type":"user_message","payload":{"content":"x","thread_id":"t"}}')
        time.sleep(0.4)  # the whole turn (about 70 ms) waits in the socket buffer
        while not tracker.done:
            assert session.receive(5) is not None
        seen_ms = tracker.result().ttfe_ms  # the first event's receive time, less the send
        if kernel:
            assert session.kernel_timestamps and 45 <= seen_ms <= 150, seen_ms
        else:
            assert seen_ms >= 400, seen_ms
        session.close()


def test_a_message_larger_than_the_socket_buffers_arrives_whole(raw_server, profile, minter):
    """One send takes a chat message whole; what a full buffer leaves over still goes."""
    ack = '{"type":"connection_established","data":{"user_id":"alice"}}'
    message = "x" * (12 * 1024 * 1024)
    received: list[bytes] = []

    def slow_reader(conn: socket.socket) -> None:
        answer_101(conn, extra=text_frame(ack))
        conn.settimeout(10)
        data = b""
        while len(data) < 14 + len(message):
            time.sleep(0.01)  # the client's buffers fill up: its first send is partial
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        received.append(data)

    server = raw_server(slow_reader)
    session = open_as(server.url, profile, minter, "alice")
    session.sock.settimeout(10)
    assert session.send_text(message) == len(message)
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    session.abort()
    data = received[0]
    assert data[:2] == b"\x81\xff" and int.from_bytes(data[2:10], "big") == len(message)
    key, masked = data[10:14], data[14:]
    unmasked = bytes(b ^ key[i % 4] for i, b in enumerate(masked[:4096]))
    assert len(masked) == len(message) and unmasked == message[:4096].encode()
