"""The reference target over real loopback sockets, driven by third-party clients.

``websockets``' sync client and ``urllib`` play the browser and the auth API client, so
these tests pin the wire protocol of shared PROTOCOL.md independently of wsload's own client.
"""

from __future__ import annotations

import base64
import itertools
import json
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from wsload.config.profile import load_profile
from wsload.config.tokens import TokenMinter
from wsload.target import RunningTarget, start_target

SECRET = "target-test-secret-0123456789abcdef"
SPEC = load_profile().token
MINTER = TokenMinter(SPEC, secret=SECRET)
TTFE_S = 0.08
GAP_S = 0.025
EVENTS = [
    "agent_started",
    "agent_thinking",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
]


# helpers ---------------------------------------------------------------------------------
def ws_connect(url: str, **kwargs: Any) -> ClientConnection:
    return connect(url, open_timeout=5, close_timeout=2, ping_interval=None, **kwargs)


def recv_json(ws: ClientConnection, timeout: float = 3.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def close_code(ws: ClientConnection, timeout: float = 3.0) -> tuple[int | None, str]:
    """Read until the server closes; its close code and reason."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
    raise AssertionError("the server did not close the connection")


def http(
    method: str, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else {}, exc.headers


def chat(ws: ClientConnection, thread_id: str | None = "thread-1", kind: str = "user_message"):
    payload: dict[str, Any] = {"content": "hello"}
    if thread_id is not None:
        payload["thread_id"] = thread_id
    if kind == "start_agent":
        payload = {"user_request": "hello", **({"thread_id": thread_id} if thread_id else {})}
    ws.send(json.dumps({"type": kind, "payload": payload}))


def read_turn(ws: ClientConnection, timeout: float = 3.0) -> list[tuple[float, dict[str, Any]]]:
    """Events of one turn with their arrival times, up to agent_completed."""
    events = []
    while True:
        event = recv_json(ws, timeout)
        events.append((time.perf_counter(), event))
        if event["type"] == "agent_completed":
            return events


def acked_user(ws: ClientConnection) -> str:
    ack = recv_json(ws)
    assert ack["type"] == "connection_established", ack
    return ack["data"]["user_id"]


def assert_auth_failed(url: str, **kwargs: Any) -> None:
    with ws_connect(url, **kwargs) as ws:
        frame = recv_json(ws)
        assert frame["type"] == "error_message"
        assert frame["error_code"] == "AUTH_FAILED"
        assert isinstance(frame["timestamp"], float)
        assert close_code(ws) == (1008, "Authentication failed")


def b64(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()


# the default target ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def target() -> Iterator[RunningTarget]:
    with start_target(["--ttfe", str(TTFE_S), "--gap", str(GAP_S)], secret=SECRET) as running:
        yield running


def test_subprotocol_raw_token_is_acked_as_subject_with_bare_name_echoed(target) -> None:
    with ws_connect(
        target.url, subprotocols=["jwt-auth", "jwt-auth." + MINTER.mint("alice")]
    ) as ws:
        assert ws.subprotocol == "jwt-auth"
        ack = recv_json(ws)
        assert ack["type"] == "connection_established"
        assert ack["data"]["user_id"] == "alice"
        assert ack["data"]["mode"] == "main" and ack["data"]["connection_id"]
        assert isinstance(ack["timestamp"], float)


def test_subprotocol_base64url_token_is_accepted(target) -> None:
    offer = ["jwt-auth", "jwt-auth." + b64(MINTER.mint("bob"))]
    with ws_connect(target.url, subprotocols=offer) as ws:
        assert acked_user(ws) == "bob"


@pytest.mark.parametrize("prefix", ["jwt.", "bearer."])
def test_token_entry_without_bare_name_is_accepted_and_no_subprotocol_echoed(
    target, prefix: str
) -> None:
    with ws_connect(target.url, subprotocols=[prefix + MINTER.mint("carol")]) as ws:
        assert ws.subprotocol is None
        assert acked_user(ws) == "carol"


@pytest.mark.parametrize("name", ["jwt", "bearer"])
def test_bare_jwt_and_bearer_names_are_echoed(target, name: str) -> None:
    offer = [name, "jwt." + MINTER.mint("dan")]
    with ws_connect(target.url, subprotocols=offer) as ws:
        assert ws.subprotocol == name
        assert acked_user(ws) == "dan"


def test_authorization_header_carries_the_token(target) -> None:
    headers = {"Authorization": "Bearer " + MINTER.mint("erin")}
    with ws_connect(target.url, additional_headers=headers) as ws:
        assert acked_user(ws) == "erin"


@pytest.mark.parametrize("param", ["token", "access_token"])
def test_query_parameter_carries_the_token(target, param: str) -> None:
    with ws_connect(f"{target.url}?{param}={MINTER.mint('frank')}") as ws:
        assert acked_user(ws) == "frank"


def test_cookie_carries_the_token(target) -> None:
    headers = {"Cookie": "theme=dark; access_token=" + MINTER.mint("gina")}
    with ws_connect(target.url, additional_headers=headers) as ws:
        assert acked_user(ws) == "gina"


def test_alias_path_serves_the_same_endpoint(target) -> None:
    url = target.url.replace("/ws", "/api/v1/websocket")
    with ws_connect(url, subprotocols=["jwt-auth", "jwt-auth." + MINTER.mint("hank")]) as ws:
        assert acked_user(ws) == "hank"


def test_ticket_flow_authenticates_as_the_token_subject_once(target) -> None:
    status, body, _ = http(
        "POST",
        target.http_url + "/api/websocket/ticket",
        headers={"Authorization": "Bearer " + MINTER.mint("ivy")},
    )
    assert status == 200 and body["expires_in"] == 30
    url = f"{target.url}?ticket={body['ticket']}"
    with ws_connect(url) as ws:
        assert acked_user(ws) == "ivy"
    assert_auth_failed(url)  # single use


def test_ticket_endpoint_requires_a_valid_access_token(target) -> None:
    url = target.http_url + "/api/websocket/ticket"
    assert http("POST", url)[0] == 401
    assert http("POST", url, headers={"Authorization": "Bearer x.y.z"})[0] == 401


def test_login_token_works_on_the_websocket(target) -> None:
    status, body, _ = http(
        "POST", target.http_url + "/auth/login", {"email": "jo@x.test", "password": "wsload-demo"}
    )
    assert status == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["user"] == {"id": "jo@x.test", "email": "jo@x.test"}
    offer = ["jwt-auth", "jwt-auth." + body["access_token"]]
    with ws_connect(target.url, subprotocols=offer) as ws:
        assert acked_user(ws) == "jo@x.test"


def test_login_with_a_wrong_password_is_401(target) -> None:
    status, body, _ = http(
        "POST", target.http_url + "/auth/login", {"email": "jo@x.test", "password": "nope"}
    )
    assert status == 401 and "detail" in body


def test_refresh_returns_a_new_working_pair(target) -> None:
    _, login, _ = http(
        "POST", target.http_url + "/auth/login", {"email": "kim@x.test", "password": "wsload-demo"}
    )
    status, body, _ = http(
        "POST", target.http_url + "/auth/refresh", {"refresh_token": login["refresh_token"]}
    )
    assert status == 200 and body["access_token"] and body["refresh_token"]
    assert body["expires_in"] == 900
    with ws_connect(
        target.url, additional_headers={"Authorization": "Bearer " + body["access_token"]}
    ) as ws:
        assert acked_user(ws) == "kim@x.test"


@pytest.mark.parametrize("token", ["garbage", "access"])
def test_refresh_with_an_invalid_or_access_token_is_401(target, token: str) -> None:
    value = MINTER.mint("kim") if token == "access" else token
    status, _, _ = http("POST", target.http_url + "/auth/refresh", {"refresh_token": value})
    assert status == 401


def test_refresh_with_an_expired_refresh_token_is_401(target) -> None:
    expired = MINTER.mint(
        "kim",
        overrides={"token_type": "refresh", "type": "refresh", "exp": int(time.time()) - 5},
    )
    status, _, _ = http("POST", target.http_url + "/auth/refresh", {"refresh_token": expired})
    assert status == 401


def test_health_reports_status_pid_and_counters(target) -> None:
    status, body, _ = http("GET", target.http_url + "/health")
    assert status == 200
    assert body["status"] == "healthy" and body["pid"] == target.pid
    for counter in ("connections", "auth_ok", "auth_rejected", "turns", "events_sent"):
        assert isinstance(body[counter], int)


@pytest.mark.parametrize("path", ["/ws", "/api/v1/websocket"])
def test_plain_get_on_the_websocket_path_answers_426(target, path: str) -> None:
    status, _, headers = http("GET", target.http_url + path)
    assert status == 426
    assert headers["Upgrade"].lower() == "websocket"


NOW = int(time.time())
BAD_TOKENS = {
    "garbage": "not.a.jwt",
    "bad_signature": TokenMinter(SPEC, secret="wrong-secret-0123456789abcdef0000").mint("u"),
    "expired": MINTER.mint("u", now=NOW - 3600, lifetime_s=60),
    "wrong_audience": MINTER.mint("u", overrides={"aud": "another-platform"}),
    "wrong_issuer": MINTER.mint("u", overrides={"iss": "evil-auth-service"}),
    "refresh_as_access": MINTER.mint("u", overrides={"token_type": "refresh", "type": "refresh"}),
    "alg_none": jwt.encode(MINTER.claims("u"), None, algorithm="none"),
    "no_jti": MINTER.mint("u", overrides={"jti": None}),
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_invalid_token_gets_error_frame_then_close_1008(target, name: str) -> None:
    assert_auth_failed(target.url, subprotocols=["jwt-auth", "jwt-auth." + BAD_TOKENS[name]])


def test_missing_token_gets_error_frame_then_close_1008(target) -> None:
    assert_auth_failed(target.url)


def test_unsupported_subprotocol_is_accepted_then_closed_1003(target) -> None:
    with ws_connect(target.url, subprotocols=["graphql-ws"]) as ws:
        assert ws.subprotocol is None
        assert close_code(ws)[0] == 1003


@pytest.fixture
def session(target) -> Iterator[ClientConnection]:
    with ws_connect(target.url, subprotocols=["jwt-auth", "jwt-auth." + MINTER.mint("una")]) as ws:
        assert acked_user(ws) == "una"
        yield ws


def test_turn_sends_the_flat_event_sequence_with_correlation_fields(session) -> None:
    chat(session, "thread-42")
    events = [event for _, event in read_turn(session)]
    assert [e["type"] for e in events] == EVENTS
    run_ids = {e["run_id"] for e in events}
    assert len(run_ids) == 1 and run_ids.pop()
    for event in events:
        assert event["user_id"] == "una"
        assert event["thread_id"] == "thread-42"
        assert isinstance(event["timestamp"], float)
        assert isinstance(event["data"], dict)
        assert "payload" not in event  # flat, no envelope


@pytest.mark.parametrize("kind", ["chat_message", "message", "start_agent"])
def test_message_aliases_start_a_turn(session, kind: str) -> None:
    chat(session, "t-alias", kind=kind)
    events = [event for _, event in read_turn(session)]
    assert [e["type"] for e in events] == EVENTS
    assert events[0]["thread_id"] == "t-alias"


def test_thread_id_is_generated_when_absent_and_run_id_is_new_per_message(session) -> None:
    chat(session, None)
    first = read_turn(session)[0][1]
    chat(session, None)
    second = read_turn(session)[0][1]
    assert first["thread_id"] and second["thread_id"]
    assert first["run_id"] != second["run_id"]


def test_turns_on_one_connection_overlap(session) -> None:
    started = time.perf_counter()
    chat(session, "a")
    chat(session, "b")
    seen: dict[str, list[str]] = {}
    while sum(types[-1:] == ["agent_completed"] for types in seen.values()) < 2:
        event = recv_json(session)
        seen.setdefault(event["run_id"], []).append(event["type"])
    elapsed = time.perf_counter() - started
    assert [types for types in seen.values()] == [EVENTS, EVENTS]
    assert elapsed < 2 * (TTFE_S + 5 * GAP_S)  # ran side by side, not one after the other


def test_event_timing_matches_the_knobs(session) -> None:
    ttfes, gaps = [], []
    for _ in range(5):
        sent = time.perf_counter()
        chat(session)
        times = [t for t, _ in read_turn(session)]
        ttfes.append(times[0] - sent)
        gaps += [b - a for a, b in itertools.pairwise(times)]
    assert statistics.median(ttfes) == pytest.approx(TTFE_S, abs=0.005)
    assert statistics.median(gaps) == pytest.approx(GAP_S, abs=0.005)


def test_ping_gets_pong(session) -> None:
    session.send(json.dumps({"type": "ping"}))
    pong = recv_json(session)
    assert pong["type"] == "pong" and isinstance(pong["timestamp"], float)


def test_unknown_message_type_gets_error_and_keeps_the_connection(session) -> None:
    session.send(json.dumps({"type": "teleport"}))
    error = recv_json(session)
    assert error["type"] == "error_message"
    assert error["error_code"] == "UNKNOWN_MESSAGE_TYPE"
    session.send(json.dumps({"type": "ping"}))
    assert recv_json(session)["type"] == "pong"


def test_message_of_8_kib_passes_and_larger_closes_1009(session) -> None:
    base = json.dumps({"type": "ping", "pad": ""})
    session.send(json.dumps({"type": "ping", "pad": "x" * (8192 - len(base))}))
    assert recv_json(session)["type"] == "pong"
    session.send(json.dumps({"type": "ping", "pad": "x" * (8193 - len(base))}))
    assert close_code(session)[0] == 1009


def test_tokens_and_secret_never_reach_the_logs(target) -> None:
    marked = MINTER.mint("leak-check")
    with ws_connect(target.url, subprotocols=["jwt-auth." + marked, "x-unknown"]) as ws:
        acked_user(ws)
    assert_auth_failed(f"{target.url}?token={marked}x")
    logs = target.stderr_text()
    assert marked not in logs and SECRET not in logs


# variants --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reject_403() -> Iterator[RunningTarget]:
    with start_target(["--reject-at-upgrade", "403"], secret=SECRET) as running:
        yield running


def test_reject_at_upgrade_answers_403_before_the_upgrade(reject_403) -> None:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(reject_403.url, subprotocols=["jwt-auth", "jwt-auth." + BAD_TOKENS["expired"]])
    assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        ws_connect(reject_403.url)


def test_reject_at_upgrade_still_acks_valid_tokens(reject_403) -> None:
    with ws_connect(
        reject_403.url, subprotocols=["jwt-auth", "jwt-auth." + MINTER.mint("v")]
    ) as ws:
        assert acked_user(ws) == "v"


@pytest.fixture(scope="module")
def demo() -> Iterator[RunningTarget]:
    with start_target(["--auth-mode", "demo"], secret=SECRET) as running:
        yield running


@pytest.mark.parametrize("token", [None, "garbage", "valid"])
def test_demo_mode_acks_every_connection_as_the_demo_user(demo, token: str | None) -> None:
    offer = {"valid": [MINTER.mint("wes")], "garbage": ["x.y.z"]}.get(token or "", [])
    with ws_connect(demo.url, subprotocols=["jwt-auth"] + ["jwt-auth." + t for t in offer]) as ws:
        assert acked_user(ws) == "demo-user-001"


@pytest.fixture(scope="module")
def relaxed() -> Iterator[RunningTarget]:
    with start_target(["--auth-mode", "relaxed"], secret=SECRET) as running:
        yield running


def test_relaxed_mode_acks_invalid_tokens_as_a_synthetic_user(relaxed) -> None:
    with ws_connect(relaxed.url, subprotocols=["jwt-auth", "jwt-auth.x.y.z"]) as ws:
        assert acked_user(ws).startswith("relaxed_")
    with ws_connect(relaxed.url, subprotocols=["jwt-auth", "jwt-auth." + MINTER.mint("xia")]) as ws:
        assert acked_user(ws) == "xia"


@pytest.fixture(scope="module")
def not_ready() -> Iterator[RunningTarget]:
    with start_target(["--not-ready"], secret=SECRET) as running:
        yield running


def test_not_ready_closes_1011_right_after_accept(not_ready) -> None:
    with ws_connect(not_ready.url, subprotocols=["jwt-auth", "jwt-auth." + MINTER.mint("y")]) as ws:
        assert close_code(ws)[0] == 1011


def test_ack_delay_delays_the_ack_and_heartbeats_follow() -> None:
    offer = ["jwt-auth", "jwt-auth." + MINTER.mint("z")]
    args = ["--ack-delay", "0.15", "--heartbeat", "0.1"]
    with start_target(args, secret=SECRET) as slow, ws_connect(slow.url, subprotocols=offer) as ws:
        opened = time.perf_counter()
        assert acked_user(ws) == "z"
        assert time.perf_counter() - opened >= 0.13
        assert recv_json(ws, timeout=1)["type"] == "heartbeat"


def test_no_ack_never_acks() -> None:
    offer = ["jwt-auth", "jwt-auth." + MINTER.mint("z")]
    with (
        start_target(["--no-ack"], secret=SECRET) as silent,
        ws_connect(silent.url, subprotocols=offer) as ws,
        pytest.raises(TimeoutError),
    ):
        ws.recv(timeout=0.3)


def test_two_workers_share_one_port_and_both_answer() -> None:
    with start_target(["--workers", "2"], secret=SECRET) as running:
        assert running.workers == 2
        pids = set()
        for _ in range(50):
            pids.add(http("GET", running.http_url + "/health")[1]["pid"])
            if len(pids) >= 2:
                break
        assert len(pids) >= 2 and running.pid not in pids
        with ws_connect(
            running.url, subprotocols=["jwt-auth", "jwt-auth." + MINTER.mint("w")]
        ) as ws:
            assert acked_user(ws) == "w"
            chat(ws)
            assert [e["type"] for _, e in read_turn(ws)] == EVENTS
        assert running.stop() == 0


def test_sigterm_closes_open_connections_with_1001_and_exits_0() -> None:
    target = start_target(secret=SECRET)
    with (
        target,
        ws_connect(target.url, subprotocols=["jwt-auth", "jwt-auth." + MINTER.mint("q")]) as ws,
    ):
        assert acked_user(ws) == "q"
        started = time.perf_counter()
        assert target.stop() == 0
        assert close_code(ws)[0] == 1001
        assert time.perf_counter() - started < 3
