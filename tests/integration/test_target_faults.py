"""The target's lifecycle, isolation, capacity, limit and fault knobs over real sockets.

Each knob is switched on in a target of its own (fractions of 1, so every turn or
connection is hit) and observed with a third-party client, ``websockets``' sync client, or
with raw sockets; the target's ``/stats`` counters must agree with what the client saw,
since a fault-matrix test compares a load run's failure counts with those counters.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from wsload.config.profile import load_profile
from wsload.config.tokens import TokenMinter
from wsload.target import RunningTarget, start_target
from wsload.target.agent import HEARTBEAT_BURST, HOSTILE_KINDS, UNKNOWN_EVENT_TYPE

SECRET = "faults-test-secret-0123456789abcdef"
MINTER = TokenMinter(load_profile().token, secret=SECRET)
FAST = ["--ttfe", "0.02", "--gap", "0.005"]
EVENTS = [
    "agent_started",
    "agent_thinking",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
]


# helpers ---------------------------------------------------------------------------------
def offer(token: str) -> list[str]:
    return ["jwt-auth", "jwt-auth." + token]


def ws_connect(url: str, token: str | None = None, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 1)
    if token is not None:
        kwargs["subprotocols"] = offer(token)
    ws = connect(url, ping_interval=None, **kwargs)
    ws.pending_legacy_warning = False  # websockets >= 17.1 asks for `with`; tests close it
    return ws


def session(
    target: RunningTarget, user: str, token: str | None = None, **kwargs: Any
) -> ClientConnection:
    """An acked session of ``user``."""
    ws = ws_connect(target.url, token or MINTER.mint(user), **kwargs)
    ack = recv_json(ws)
    assert ack["type"] == "connection_established" and ack["data"]["user_id"] == user, ack
    return ws


def recv_json(ws: ClientConnection, timeout: float = 3.0) -> Any:
    return json.loads(ws.recv(timeout=timeout))


def chat(ws: ClientConnection, thread: str = "t-1") -> None:
    ws.send(json.dumps({"type": "user_message", "payload": {"content": "hi", "thread_id": thread}}))


def read_turn(ws: ClientConnection, timeout: float = 3.0) -> list[str | bytes]:
    """Raw frames up to and including the terminal event (agent_completed or agent_error)."""
    frames: list[str | bytes] = []
    while True:
        frame = ws.recv(timeout=timeout)
        frames.append(frame)
        try:
            event = json.loads(frame)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") in ("agent_completed", "agent_error"):
            return frames


def events_of(frames: list[str | bytes]) -> list[dict[str, Any]]:
    return [json.loads(f) for f in frames]


def closed_by_server(ws: ClientConnection, timeout: float = 3.0) -> ConnectionClosed:
    """Read until the connection ends; the ConnectionClosed (``rcvd`` None: no close frame)."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as info:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    return info.value


def stats(target: RunningTarget, query: str = "") -> dict[str, Any]:
    with urllib.request.urlopen(f"{target.http_url}/stats{query}", timeout=5) as response:
        return json.loads(response.read())


def counters(target: RunningTarget) -> dict[str, Any]:
    return stats(target)["counters"]


def wait_counter(target: RunningTarget, name: str, value: int, timeout: float = 2.0) -> dict:
    """The counters once ``name`` reached ``value`` (turn tasks finish after their frames)."""
    deadline = time.monotonic() + timeout
    while True:
        current = counters(target)
        if current[name] >= value or time.monotonic() > deadline:
            return current
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_wait_on(port: int) -> int:
    """Sockets in TIME_WAIT whose local port is ``port`` (from /proc/net/tcp)."""
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "06":
                count += 1
    return count


@pytest.fixture
def started() -> Iterator[Any]:
    """``started(args)`` starts a target that is stopped when the test ends."""
    targets: list[RunningTarget] = []

    def start(*args: str) -> RunningTarget:
        targets.append(start_target(list(args), secret=SECRET))
        return targets[-1]

    yield start
    for target in targets:
        assert target.stop() == 0
        logs = target.stderr_text()
        assert "Traceback" not in logs and "Error handling request" not in logs, logs


# session lifecycle -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def expiring() -> Iterator[RunningTarget]:
    with start_target(["--close-on-expiry", *FAST], secret=SECRET) as running:
        yield running
        assert "Traceback" not in running.stderr_text()


def soon_exp() -> int:
    """An ``exp`` 0.6 to 1 s ahead: PyJWT compares whole seconds, so wait for a fresh one."""
    while time.time() % 1 > 0.4:
        time.sleep(0.02)
    return int(time.time()) + 1


def ticket_for(target: RunningTarget, token: str) -> str:
    request = urllib.request.Request(
        target.http_url + "/api/websocket/ticket",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["ticket"]


def test_close_on_expiry_closes_1008_token_expired_when_exp_passes(expiring) -> None:
    exp = soon_exp()
    ws = session(expiring, "exp-user", MINTER.mint("exp-user", overrides={"exp": exp}))
    # a ticket session expires with the token it was issued for, not with the ticket
    ticket = ticket_for(expiring, MINTER.mint("ticket-user", overrides={"exp": exp}))
    ticketed = ws_connect(f"{expiring.url}?ticket={ticket}")
    assert recv_json(ticketed)["type"] == "connection_established"
    chat(ws)
    assert events_of(read_turn(ws))[-1]["type"] == "agent_completed"  # alive before exp
    for conn in (ws, ticketed):
        closed = closed_by_server(conn)
        assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "Token expired")
        assert exp - 0.05 < time.time() < exp + 0.5
    assert counters(expiring)["expired_closed"] == 2


def test_in_band_refresh_moves_the_expiry_and_answers_token_refreshed(expiring) -> None:
    exp = soon_exp()
    ws = session(expiring, "ref-user", MINTER.mint("ref-user", overrides={"exp": exp}))
    later = exp + 60
    token = MINTER.mint("ref-user", overrides={"exp": later})
    ws.send(json.dumps({"type": "token_refresh", "payload": {"token": token}}))
    answer = recv_json(ws)
    assert (answer["type"], answer["expires_at"]) == ("token_refreshed", later)
    assert isinstance(answer["timestamp"], float)
    time.sleep(max(0.0, exp - time.time()) + 0.15)  # past the first token's exp: still open
    ws.send(json.dumps({"type": "ping"}))
    assert recv_json(ws)["type"] == "pong"
    ws.close()
    assert counters(expiring)["in_band_refreshes"] >= 1


@pytest.mark.parametrize("case", ["other_subject", "invalid_token"])
def test_in_band_refresh_with_another_subject_or_bad_token_gets_error_and_1008(
    expiring, case: str
) -> None:
    ws = session(expiring, "victim")
    token = MINTER.mint("intruder") if case == "other_subject" else "x.y.z"
    ws.send(json.dumps({"type": "token_refresh", "payload": {"token": token}}))
    error = recv_json(ws)
    assert (error["type"], error["error_code"]) == ("error_message", "AUTH_FAILED")
    assert "refresh" in error["error_message"]
    closed = closed_by_server(ws)
    assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "Token refresh failed")


def test_restarted_target_binds_the_same_port_while_old_connections_are_in_time_wait() -> None:
    port = free_port()
    first = start_target(["--port", str(port)], secret=SECRET)
    with first:
        sockets = [session(first, f"r{i}") for i in range(3)]
        assert first.stop() == 0  # the server closes 1001 first: TIME_WAIT is on its side
    for ws in sockets:
        ws.close()
    # The restarts below are the point; old connections in TIME_WAIT make them harder. How
    # the closes race decides whether any are left in TIME_WAIT, so wait a little for them,
    # but do not require them.
    deadline = time.monotonic() + 2
    while time_wait_on(port) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    began = time.perf_counter()
    with start_target(["--port", str(port)], secret=SECRET) as second:
        assert second.port == port and time.perf_counter() - began < 3
        survivor = session(second, "back")
        second.process.kill()  # killed, not stopped: no close frame, no cleanup
        second.process.wait(5)
    survivor.close()
    with start_target(["--port", str(port)], secret=SECRET) as third:
        assert third.port == port and time.perf_counter() - began < 6
        session(third, "again").close()


# isolation -------------------------------------------------------------------------------
def test_leak_fraction_copies_events_to_another_users_connection(started) -> None:
    target = started("--leak-fraction", "1", *FAST)
    with session(target, "alice") as alice:
        chat(alice)
        assert [e["type"] for e in events_of(read_turn(alice))] == EVENTS  # alone: no leak
        with session(target, "bob") as bob:
            chat(alice, "alice-thread")
            own = events_of(read_turn(alice))
            leaked = events_of(read_turn(bob))
    assert leaked == own  # the same frames, alice's ids kept
    assert {(e["user_id"], e["thread_id"]) for e in leaked} == {("alice", "alice-thread")}
    current = stats(target, "?all=1")["counters"]  # one worker: the same as /stats
    assert current["leaked_events"] == len(EVENTS)
    assert current["leak_no_target"] == len(EVENTS)


# capacity --------------------------------------------------------------------------------
def test_capacity_stretches_every_delay_past_n_concurrent_turns(started) -> None:
    target = started(
        "--capacity", "2", "--overload-delay", "0.2", "--ttfe", "0.05", "--gap", "0.01",
        "--thinking-steps", "0", "--tools", "0",
    )  # fmt: skip
    with session(target, "cap") as ws:
        sent = time.perf_counter()
        chat(ws)
        read_turn(ws)
        alone = time.perf_counter() - sent
        sent = time.perf_counter()
        for i in range(6):
            chat(ws, f"t{i}")
        first_events: dict[str, float] = {}
        ends: list[float] = []
        while len(ends) < 6:
            event = recv_json(ws)
            first_events.setdefault(event["run_id"], time.perf_counter() - sent)
            if event["type"] == "agent_completed":
                ends.append(time.perf_counter() - sent)
    # 6 running, capacity 2: each of the 2 delays grows by 0.2 * (6 - 2) / 2 = 0.4 s
    assert alone < 0.2
    assert min(first_events.values()) > 0.3
    assert max(ends) > 0.6
    current = counters(target)
    assert current["overloaded_turns"] == 4 and current["active_turns"] == 0


# faults ----------------------------------------------------------------------------------
def test_drop_mid_turn_aborts_tcp_without_a_close_frame(started) -> None:
    target = started("--drop-mid-turn", "1", "--seed", "1", *FAST)
    ws = session(target, "dropped")
    chat(ws)
    seen = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            seen.append(recv_json(ws)["type"])
    assert info.value.rcvd is None  # no close frame: the TCP connection just went
    assert 1 <= len(seen) < len(EVENTS) and "agent_completed" not in seen
    current = wait_counter(target, "turns_aborted", 1)
    assert current["dropped_connections"] == 1 and current["turns_completed"] == 0


def test_skip_events_leaves_out_one_non_terminal_event(started) -> None:
    target = started("--skip-events", "1", "--seed", "2", *FAST)
    with session(target, "skip") as ws:
        chat(ws)
        events = events_of(read_turn(ws))
    types = [e["type"] for e in events]
    assert len(types) == len(EVENTS) - 1 and types[-1] == "agent_completed"
    missing = sorted(set(range(len(EVENTS))) - {e["data"]["seq"] for e in events})
    assert len(missing) == 1 and missing[0] < len(EVENTS) - 1
    assert types == [t for i, t in enumerate(EVENTS) if i != missing[0]]
    assert wait_counter(target, "turns_completed", 1)["skipped_events"] == 1


def test_reorder_events_swaps_two_adjacent_non_terminal_events(started) -> None:
    target = started("--reorder-events", "1", "--seed", "3", *FAST)
    with session(target, "reorder") as ws:
        chat(ws)
        events = events_of(read_turn(ws))
    seqs = [e["data"]["seq"] for e in events]
    swaps = [i for i in range(len(seqs) - 1) if seqs[i] > seqs[i + 1]]
    assert len(swaps) == 1 and sorted(seqs) == list(range(len(EVENTS)))
    i = swaps[0]
    assert seqs[i] == seqs[i + 1] + 1 and events[-1]["type"] == "agent_completed"
    times = [e["timestamp"] for e in events]
    assert times == sorted(times)  # sent in order of time, out of order of the turn
    assert wait_counter(target, "turns_completed", 1)["reordered_events"] == 1


def test_duplicate_events_sends_one_event_twice_byte_identical(started) -> None:
    target = started("--duplicate-events", "1", "--seed", "4", *FAST)
    with session(target, "dup") as ws:
        chat(ws)
        frames = read_turn(ws)
    assert len(frames) == len(EVENTS) + 1
    twice = [f for f in set(frames) if frames.count(f) == 2]
    assert len(twice) == 1 and json.loads(twice[0])["type"] != "agent_completed"
    assert [e["type"] for e in events_of(list(dict.fromkeys(frames)))] == EVENTS
    assert wait_counter(target, "turns_completed", 1)["duplicated_events"] == 1


def test_duplicate_terminal_sends_the_terminal_event_twice_byte_identical(started) -> None:
    target = started("--duplicate-terminal", "1", "--seed", "4", *FAST)
    with session(target, "dup-end") as ws:
        for thread in ("t-1", "t-2", "t-3"):  # a copy left over would end the next read early
            chat(ws, thread)
            frames = read_turn(ws)
            frames.append(ws.recv(timeout=3))  # the copy, right after the terminal event
            assert frames[-1] == frames[-2] and json.loads(frames[-1])["type"] == EVENTS[-1]
            assert [e["type"] for e in events_of(frames[:-1])] == EVENTS
    done = wait_counter(target, "turns_completed", 3)
    assert done["duplicated_terminal_events"] == 3 and done["duplicated_events"] == 0


def test_duplicate_terminal_also_repeats_an_agent_error(started) -> None:
    target = started("--duplicate-terminal", "1", "--error-events", "1", *FAST)
    with session(target, "dup-err") as ws:
        chat(ws)
        frames = read_turn(ws)
        assert ws.recv(timeout=3) == frames[-1] and json.loads(frames[-1])["type"] == "agent_error"
    assert wait_counter(target, "duplicated_terminal_events", 1)["duplicated_terminal_events"] == 1


def test_error_events_end_the_turn_with_agent_error_and_a_message(started) -> None:
    target = started("--error-events", "1", *FAST)
    with session(target, "err") as ws:
        chat(ws)
        events = events_of(read_turn(ws))
    assert [e["type"] for e in events] == [*EVENTS[:-1], "agent_error"]
    error = events[-1]
    assert error["error_message"] and error["data"]["error"] == error["error_message"]
    assert error["user_id"] == "err" and error["run_id"] == events[0]["run_id"]
    time.sleep(0.05)
    current = counters(target)
    assert current["error_events"] == 1 and current["turns_completed"] == 0
    assert current["turns_aborted"] == 0


def test_slow_handshake_delays_the_101_past_a_short_client_timeout(started) -> None:
    target = started("--slow-handshake", "0.4")
    with pytest.raises(TimeoutError):
        ws_connect(target.url, MINTER.mint("impatient"), open_timeout=0.15)
    began = time.perf_counter()
    with ws_connect(target.url, MINTER.mint("patient")) as ws:
        assert time.perf_counter() - began >= 0.38
        assert recv_json(ws)["type"] == "connection_established"
    assert counters(target)["slow_handshakes"] == 2


def test_max_connections_answers_the_upgrade_with_503(started) -> None:
    target = started("--max-connections", "2", "--slow-handshake", "0.2")

    def attempt(i: int) -> ClientConnection | int:
        try:
            return session(target, f"m{i}")
        except InvalidStatus as exc:
            return exc.response.status_code

    with ThreadPoolExecutor(4) as pool:  # a burst: all four are handshaking at once
        results = list(pool.map(attempt, range(4)))
    held = [r for r in results if not isinstance(r, int)]
    assert len(held) == 2 and sorted(r for r in results if isinstance(r, int)) == [503, 503]
    held.pop().close()
    time.sleep(0.05)
    session(target, "m5").close()  # a slot is free again
    held.pop().close()
    assert counters(target)["rejected_max_connections"] == 2


def test_max_connections_with_limit_close_accepts_then_closes_1013(started) -> None:
    target = started("--max-connections", "1", "--limit-close")
    with session(target, "l1"), ws_connect(target.url, MINTER.mint("l2")) as over:
        closed = closed_by_server(over)
        assert (closed.rcvd.code, closed.rcvd.reason) == (1013, "Try again later")
    assert counters(target)["rejected_max_connections"] == 1


def test_connections_per_user_rejects_one_more_with_error_frame_and_1013(started) -> None:
    target = started("--connections-per-user", "2")
    held = [session(target, "greedy"), session(target, "greedy")]
    with ws_connect(target.url, MINTER.mint("greedy")) as extra:
        frame = recv_json(extra)
        assert (frame["type"], frame["error_code"]) == ("error_message", "CONNECTION_LIMIT")
        assert closed_by_server(extra).rcvd.code == 1013
    session(target, "modest").close()  # other users are not limited
    held.pop().close()
    time.sleep(0.05)
    session(target, "greedy").close()  # a slot of the user is free again
    assert counters(target)["rejected_per_user"] == 1


def test_default_limits_allow_10_connections_per_user_and_any_message_rate(started) -> None:
    target = started()
    held = [session(target, "ten") for _ in range(10)]
    with ws_connect(target.url, MINTER.mint("ten")) as eleventh:
        assert recv_json(eleventh)["error_code"] == "CONNECTION_LIMIT"
    for _ in range(100):
        held[0].send(json.dumps({"type": "ping"}))
    assert all(recv_json(held[0])["type"] == "pong" for _ in range(100))
    for ws in held:
        ws.close()


def test_messages_per_minute_answers_over_limit_messages_with_rate_limited(started) -> None:
    target = started("--messages-per-minute", "3")
    with session(target, "chatty") as ws:
        for _ in range(4):
            ws.send(json.dumps({"type": "ping"}))
        answers = [recv_json(ws) for _ in range(4)]
        assert [a["type"] for a in answers[:3]] == ["pong"] * 3
        assert answers[3]["error_code"] == "RATE_LIMITED" and answers[3]["retry_after"] > 0
        ws.send(json.dumps({"type": "ping"}))  # still open, still limited
        assert recv_json(ws)["error_code"] == "RATE_LIMITED"
    assert counters(target)["rate_limited"] == 2


def test_half_open_after_stops_answering_but_keeps_tcp_open(started) -> None:
    target = started("--half-open-after", "0.5", "--heartbeat", "0.1", *FAST)
    ws = session(target, "ghost", close_timeout=0.3)
    acked = time.monotonic()
    assert recv_json(ws)["type"] == "heartbeat"
    ws.ping().wait(1)  # protocol-level ping answered while healthy
    ws.send(json.dumps({"type": "ping"}))
    assert recv_json(ws)["type"] == "pong"
    time.sleep(max(0.0, acked + 0.55 - time.monotonic()))
    while True:  # drain what was sent before it went silent
        try:
            ws.recv(timeout=0.15)
        except TimeoutError:
            break
    pong = ws.ping()
    ws.send(json.dumps({"type": "ping"}))
    chat(ws)
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0.4)  # no pong, no heartbeat, no events
    assert not pong.wait(0.01)
    assert counters(target)["half_open"] == 1
    # TCP is still open: our close frame gets no answer, so the client gives up and aborts
    began = time.perf_counter()
    ws.close()
    assert ws.protocol.close_rcvd is None and time.perf_counter() - began >= 0.25


def test_hostile_sends_each_kind_of_bad_frame_mid_turn(started) -> None:
    target = started("--hostile", "1", "--seed", "5", *FAST)
    found: dict[str, int] = {}
    with session(target, "hostile") as ws:
        for turn in range(len(HOSTILE_KINDS)):
            chat(ws, f"h{turn}")
            frames = read_turn(ws)
            events = []
            for frame in frames:
                if isinstance(frame, bytes):
                    found["binary"] = found.get("binary", 0) + 1
                    continue
                try:
                    parsed = json.loads(frame)
                except ValueError:
                    found["malformed_json"] = found.get("malformed_json", 0) + 1
                    continue
                if isinstance(parsed, list):
                    kind = "json_array"
                elif "type" not in parsed:
                    kind = "missing_type"
                elif parsed["type"] == UNKNOWN_EVENT_TYPE:
                    kind = "unknown_type"
                elif parsed["type"] == "heartbeat":
                    kind = "heartbeat_burst"
                else:
                    events.append(parsed["type"])
                    continue
                found[kind] = found.get(kind, 0) + 1
            assert events == EVENTS  # the turn itself is intact
    assert found == {**dict.fromkeys(HOSTILE_KINDS, 1), "heartbeat_burst": HEARTBEAT_BURST}
    current = wait_counter(target, "turns_completed", len(HOSTILE_KINDS))
    assert current["hostile_frames"] == dict.fromkeys(HOSTILE_KINDS, 1)


# counters --------------------------------------------------------------------------------
def test_stats_counts_per_process_and_all_sums_over_workers(started) -> None:
    target = started("--workers", "2", "--error-events", "1", *FAST)
    for i in range(8):
        with session(target, f"s{i}") as ws:
            chat(ws)
            read_turn(ws)
    with ws_connect(target.url) as anonymous:  # no token: error frame and 1008
        assert recv_json(anonymous)["error_code"] == "AUTH_FAILED"
        closed_by_server(anonymous)
    pids: dict[int, dict[str, Any]] = {}
    for _ in range(40):
        answer = stats(target)
        assert answer["scope"] == "process" and answer["workers"] == 2
        pids[answer["pid"]] = answer["counters"]
        if len(pids) == 2:
            break
    total = stats(target, "?all=1")
    assert total["scope"] == "all" and total["reporting"] == 2 and total["fresh"]
    assert {p["pid"] for p in total["processes"]} == set(pids)
    summed = total["counters"]
    assert summed["turns"] == summed["error_events"] == 8
    assert (summed["auth_ok"], summed["auth_rejected"], summed["connections"]) == (8, 1, 9)
    assert summed["hostile_frames"] == dict.fromkeys(HOSTILE_KINDS, 0)
    assert len(pids) == 2  # each request reaches one worker; both answered some
    assert sum(c["connections"] for c in pids.values()) == 9
