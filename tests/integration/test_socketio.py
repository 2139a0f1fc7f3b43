"""Socket.IO against a real python-socketio server (tests/socketio_backend.py, uvicorn):
another namespace, every token carrier, both ways to open, server-side rejections, negative
probes; and the framing check that stops a profile pointed at the wrong kind of server."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SECRET, BackendProcess

from wsload import taxonomy
from wsload.config.profile import load_profile
from wsload.config.tokens import TokenMinter
from wsload.errors import ConfigError
from wsload.net.client import ClientOptions, ConnectError, connect
from wsload.net.probes import AUTH_PROBES, ProbeTokens, run_probe
from wsload.net.transport_check import check_framing
from wsload.protocol.carrier import place
from wsload.protocol.events import TurnEnded
from wsload.protocol.tracker import TurnTracker

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
PROFILE = load_profile(DATA / "socketio_backend.toml")
FAST = ClientOptions(connect_timeout_s=3.0, handshake_timeout_s=3.0, ack_timeout_s=3.0)
TOOL_MS = 40.0


@pytest.fixture(scope="module")
def server():
    backend = BackendProcess(
        "socketio_backend.py", (), {"BACKEND_SECRET": SECRET, "TOOL_MS": str(TOOL_MS)}
    )
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def minter():
    return TokenMinter(PROFILE.token, secret=SECRET)


def url_of(server) -> str:
    return f"{server.host}/socket.io"


def with_transport(profile=PROFILE, **changes):
    return dataclasses.replace(profile, transport=dataclasses.replace(profile.transport, **changes))


def open_as(server, minter, subject, profile=PROFILE, carrier=None, token=None):
    url = url_of(server)
    token = token if token is not None else minter.mint(subject)
    placement = place(profile.auth, url, token, carrier=carrier)
    return connect(url, profile, placement, expected_subject=subject, options=FAST)


def one_turn(conn, profile=PROFILE):
    tracker = TurnTracker(
        profile.events, profile.grammar, sent_at=time.perf_counter(), user_id=conn.user_id,
        thread_id="t1", timeout_s=5, event_timeout_s=5,
    )  # fmt: skip
    conn.session.begin_turn(tracker)
    conn.send_text(json.dumps({"content": "hello", "thread_id": "t1"}))
    seen = []
    while not tracker.done:
        seen += [type(e).__name__ for e in conn.receive(5) or [] if type(e) is not TurnEnded]
    conn.session.end_turn()
    return tracker.result(), seen


@pytest.mark.parametrize("carrier", ["connect", "cookie", "query", "header"])
def test_every_carrier_authenticates_in_another_namespace_and_turns_are_timed(
    server, minter, carrier
):
    conn = open_as(server, minter, f"sio-{carrier}", carrier=carrier)
    try:
        assert conn.user_id == f"sio-{carrier}"  # named by the server's "session" event
        result, seen = one_turn(conn)
        assert result.ok, result.failures
        # python-socketio sends the "session" emit before its CONNECT ack: the late ack is
        # taken quietly (no stray, no protocol error reported)
        assert conn.session.codec.sid and seen == []
        assert result.names.count("stream_chunk") == 3
        ((name, tool_ms),) = result.spans_ms
        # the server sleeps TOOL_MS between its two emits; its own send of the first can lag
        assert name == "tool" and TOOL_MS - 2 <= tool_ms < TOOL_MS + 50
    finally:
        conn.close()


def test_a_polling_open_upgrades_to_the_websocket_as_browsers_do(server, minter):
    conn = open_as(server, minter, "sio-polling", profile=with_transport(open="polling"))
    try:
        codec = conn.session.codec
        assert "websocket" in codec.open_packet["upgrades"]  # opened over HTTP first
        assert "sid=" in conn.endpoint.resource and conn.user_id == "sio-polling"
        result, _ = one_turn(conn)
        assert result.ok, result.failures
    finally:
        conn.close()


def test_a_bad_token_is_rejected_by_the_connect_error_with_its_message(server, minter):
    with pytest.raises(ConnectError) as info:
        open_as(server, minter, "x", token="not-a-jwt")
    err = info.value
    assert err.failure == taxonomy.AUTH_REJECTED and err.phase == "auth"
    assert "authentication failed: DecodeError" in err.detail
    assert err.timings.auth_ms is not None and err.timings.auth_ms < 1000


def test_a_namespace_the_server_does_not_serve_is_named_not_taken_for_auth(server, minter):
    with pytest.raises(ConnectError) as info:
        open_as(server, minter, "x", profile=with_transport(namespace="/nope"))
    assert info.value.failure == taxonomy.NAMESPACE_REFUSED
    assert "namespace '/nope'" in info.value.detail and "transport.namespace" in info.value.detail


def test_every_negative_probe_is_refused_over_the_connect_payload(server, minter):
    tokens = ProbeTokens(minter)
    for probe in AUTH_PROBES:
        if probe in ("refresh_as_access",):  # the backend does not check the token type
            continue
        result = run_probe(probe, PROFILE, url_of(server), tokens, "prober", FAST)
        assert result.ok, (probe, result)
        assert result.failure is None


def test_a_socketio_profile_at_a_plain_websocket_server_fails_before_load(target):
    profile = load_profile("chainlit")
    with pytest.raises(ConfigError) as info:
        check_framing(f"ws://127.0.0.1:{target.port}/ws/socket.io", profile)
    assert "does not speak Socket.IO" in str(info.value)
    assert 'transport.framing = "json"' in info.value.fix


def test_a_plain_json_profile_at_a_socketio_server_fails_before_load(server):
    with pytest.raises(ConfigError) as info:
        check_framing(url_of(server), load_profile("default"))
    assert "speaks Socket.IO" in str(info.value) and "socketio" in info.value.fix
    check_framing(url_of(server), PROFILE)  # the right profile passes


def locust_start(host: str, profile: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
        + ["-u", "1", "-r", "1", "-t", "3s", "--host", host, "--ws-profile", profile]
        + ["--probe-users", "0", "--results", str(tmp_path / "run")],
        cwd=REPO,
        env={**os.environ, "JWT_SECRET_KEY": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("where", "profile", "said"),
    [
        ("target", "chainlit", "does not speak Socket.IO"),
        ("socketio", "default", "speaks Socket.IO"),
        ("socketio", str(DATA / "bad_connect_template.toml"), "unknown placeholder {tokn}"),
        ("socketio", str(DATA / "unserved_namespace.toml"), "does not serve the Socket.IO"),
    ],
)
def test_a_run_with_the_wrong_framing_stops_before_load_with_one_message(
    target, server, tmp_path, where, profile, said
):
    host = target.url if where == "target" else url_of(server)
    done = locust_start(host, profile, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("wsload: error:")]
    assert len(errors) == 1 and said in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
