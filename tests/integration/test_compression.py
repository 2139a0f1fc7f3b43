"""permessage-deflate against servers written apart from wsload, with it on and off.

wsload offers ``permessage-deflate; client_max_window_bits`` as Chromium does; the servers
are the reference target (aiohttp's implementation), FastAPI under uvicorn (the websockets
and the wsproto implementations, deflate on by uvicorn's default and off), and a websockets
server that imposes every parameter RFC 7692 lets a server impose. A turn that completes
proves both directions: the server inflated our message, we inflated its events.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.sync.server import serve

from wsload import taxonomy
from wsload.net.client import ClientOptions, ConnectError, Connection, connect
from wsload.protocol.carrier import place
from wsload.protocol.tracker import TurnResult, TurnTracker
from wsload.protocol.upgrade import accept_for, parse_head

FAST = ClientOptions(connect_timeout_s=3.0, handshake_timeout_s=3.0, ack_timeout_s=3.0)
OFF = ClientOptions(connect_timeout_s=3.0, handshake_timeout_s=3.0, compression="off")


def open_as(url, profile, minter, subject, options=FAST) -> Connection:
    placement = place(profile.auth, url, minter.mint(subject))
    return connect(url, profile, placement, expected_subject=subject, options=options)


def run_turn(conn: Connection, profile, content: str = "hello", thread: str = "t1") -> TurnResult:
    """Send one chat message and read until the tracker has its verdict."""
    tracker = TurnTracker(
        profile.events,
        profile.grammar,
        sent_at=time.perf_counter(),
        user_id=None,
        thread_id=None,
        timeout_s=5,
        event_timeout_s=5,
    )
    conn.session.begin_turn(tracker)
    message = (
        f'{{"type":"user_message","payload":{{"content":"{content}","thread_id":"{thread}"}}}}'
    )
    conn.send_text(message)
    while not tracker.done:
        assert conn.receive(5) is not None, "the turn stalled"
    conn.session.end_turn()
    return tracker.result()


def bytes_for_turns(conn: Connection, profile, turns: int) -> int:
    before = conn.session.bytes_received
    for i in range(turns):
        result = run_turn(conn, profile, f"message {i}")
        assert result.ok, result.failures
    return conn.session.bytes_received - before


def test_the_reference_target_agrees_to_the_offer_and_turns_run_compressed(
    target_factory, profile, minter
):
    on = target_factory()
    off = target_factory("--no-compression")
    compressed = open_as(on.url, profile, minter, "deflate-on")
    plain = open_as(off.url, profile, minter, "deflate-off")
    assert compressed.session.extensions.startswith("permessage-deflate")
    assert plain.session.extensions == ""  # refused: the session goes on uncompressed
    # context takeover: later turns compress against the earlier ones
    wire_compressed = bytes_for_turns(compressed, profile, 4)
    wire_plain = bytes_for_turns(plain, profile, 4)
    assert wire_compressed < wire_plain * 0.7, (wire_compressed, wire_plain)
    compressed.close()
    plain.close()


def test_compression_off_offers_nothing_and_the_target_sends_plain_frames(target, profile, minter):
    conn = open_as(target.url, profile, minter, "no-offer", options=OFF)
    assert conn.session.extensions == ""
    assert run_turn(conn, profile).ok
    conn.close()


@pytest.mark.parametrize("implementation", ["websockets", "wsproto"])
@pytest.mark.parametrize("deflate", [True, False], ids=["deflate-on", "deflate-off"])
def test_uvicorn_sessions_run_with_its_deflate_on_and_off(
    fastapi_backend, profile, minter, implementation, deflate
):
    args = ("--ws", implementation) + (() if deflate else ("--no-deflate",))
    server = fastapi_backend(*args)
    conn = open_as(server.url, profile, minter, f"uvicorn-{implementation}")
    assert conn.session.extensions.startswith("permessage-deflate") is deflate
    for i in range(3):
        result = run_turn(conn, profile, f"turn {i}")
        assert result.ok, result.failures
    conn.close()


@pytest.fixture
def strict_deflate_server():
    """A websockets server that imposes small windows and no context takeover both ways,
    acks, and answers each message with a turn whose events repeat the message."""
    received: list[str] = []

    def handler(ws) -> None:
        ws.send('{"type":"connection_established","data":{"user_id":"strict"}}')
        for message in ws:
            received.append(message)
            filler = json.loads(message)["payload"]["content"] * 3  # repeats 2 KB apart
            for name in ("agent_started", "agent_thinking", "agent_completed"):
                event = {"type": name, "thread_id": "t1", "turn": len(received), "echo": filler}
                ws.send(json.dumps(event))

    factory = ServerPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=9,
    )
    server = serve(
        handler,
        "127.0.0.1",
        0,
        extensions=[factory],
        subprotocols=["jwt-auth"],
        select_subprotocol=lambda conn, offered: "jwt-auth",
        compression=None,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.socket.getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/ws", received
    finally:
        server.shutdown()
        thread.join(5)


def test_the_parameters_a_server_imposes_are_honoured(strict_deflate_server, profile, minter):
    url, received = strict_deflate_server
    conn = open_as(url, profile, minter, "strict")
    agreed = conn.session.extensions
    for word in (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits=10",
        "client_max_window_bits=9",
    ):
        assert word in agreed, agreed
    # 2 KB of text whose repeats lie beyond a 512-byte window: deflated with a larger
    # window than agreed, the server could not inflate it
    content = "".join(f"{i:04d}" for i in range(500))
    for _ in range(2):  # no context takeover: the second message stands alone too
        result = run_turn(conn, profile, content)
        assert result.ok, result.failures
    assert [content in m for m in received] == [True, True]
    conn.close()


def answer_extension(conn: socket.socket, extension: str) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    key = parse_head(data).header("sec-websocket-key") or ""
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept_for(key)}\r\n".encode()
        + b"Sec-WebSocket-Protocol: jwt-auth\r\n"
        + f"Sec-WebSocket-Extensions: {extension}\r\n\r\n".encode()
    )
    time.sleep(1)


@pytest.mark.parametrize(
    ("extension", "options", "said"),
    [
        ("x-webkit-deflate-frame", FAST, "only permessage-deflate was offered"),
        ("permessage-deflate; client_max_window_bits=8", FAST, "parameters refused"),
        ("permessage-deflate", OFF, "offered none"),
    ],
    ids=["another-extension", "window-8", "not-offered"],
)
def test_an_extension_answer_a_browser_would_fail_is_an_invalid_upgrade(
    raw_server, profile, minter, extension, options, said
):
    server = raw_server(lambda conn: answer_extension(conn, extension))
    with pytest.raises(ConnectError) as info:
        open_as(server.url, profile, minter, "bad-extension", options=options)
    assert info.value.failure == taxonomy.INVALID_HTTP
    assert said in info.value.detail
