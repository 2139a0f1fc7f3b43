"""A terminal event sent twice is counted once per copy, as ``session:duplicate``.

Real headless Locust runs against the reference target with ``--duplicate-terminal 1``
(every turn's ``agent_completed`` comes twice, byte-identical, back to back; the counts are
held against the target's own ``GET /stats``), and against a small ``websockets`` backend
that sends the copy only once the next message has come, so it always lands in the next
turn, which must not take it for one of its own events.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.server import serve

from wsload.run.summary import load_samples
from wsload.target import start_target

REPO = Path(__file__).resolve().parents[2]
SECRET = "duplicate-terminal-secret-0123456789abcd"
USERS = 8
pytestmark = pytest.mark.slow


def locust(tmp_path: Path, host: str, *extra: str, seconds: int = 4):
    """A headless run of ``USERS`` chat users, think time 0: its output and samples."""
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
        + ["-u", str(USERS), "-r", str(USERS), "-t", f"{seconds}s", "--host", host]
        + ["--think-time", "0", "--probe-users", "0", "--only-summary"]
        + ["--results", str(tmp_path / "run"), *extra],
        cwd=REPO,
        env={**os.environ, "JWT_SECRET_KEY": SECRET},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out[-3000:]
    samples = load_samples(tmp_path / "run")
    return out, samples.loc[samples["kind"] != "health"]


def run(tmp_path: Path, knobs: list[str], *extra: str, seconds: int = 4):
    """Locust against a target with ``knobs``: its output, samples and the target's counters."""
    fast = ["--seed", "3", "--ttfe", "0.005", "--gap", "0.001"]
    target = start_target([*fast, *knobs], secret=SECRET)
    try:
        out, samples = locust(tmp_path, target.url, *extra, seconds=seconds)
        # read after the run: every copy the target sent is counted by now
        with urllib.request.urlopen(f"{target.http_url}/stats", timeout=5) as answer:
            counters = json.loads(answer.read())["counters"]
    finally:
        target.stop()
    return out, samples, counters


def duplicates(samples):
    rows = samples.loc[samples["name"] == "session:duplicate"]
    assert set(rows["kind"]) <= {"session"} and not rows["ok"].any()
    assert set(rows["failure"]) <= {"sequence_duplicate"}
    return rows


def test_every_copy_read_is_one_duplicate_and_the_next_turn_stays_clean(tmp_path):
    out, samples, counters = run(
        tmp_path,
        ["--duplicate-terminal", "1.0"],
        *("--heartbeat-interval", "0.2", "--pong-timeout", "2"),
    )
    sent = counters["duplicated_terminal_events"]
    rows = duplicates(samples)
    turns = samples.loc[samples["name"] == "turn:e2e"]
    assert len(turns) > 200 and sent >= len(turns)
    # A user stopped at the end may have had its last copy on the way: one per user at most.
    assert sent - USERS <= len(rows) <= sent, (len(rows), sent)
    assert (
        rows["detail"].str.fullmatch(r"agent_completed after its turn ended \(run run_\w+\)").all()
    )
    # no copy was taken for an event of the next turn (it would break that turn's run id)
    assert turns["ok"].all(), turns.loc[~turns["ok"], ["failure", "detail"]].head()
    failed = samples.loc[~samples["ok"]]
    assert set(failed["name"]) == {"session:duplicate"}, failed["name"].value_counts()
    assert "failures: none" not in out
    listed = out[out.index("failures by taxonomy id:") :].splitlines()[1].split()
    assert listed == ["session:duplicate", "sequence_duplicate", str(len(rows))]
    # durations taken from two clocks (send on perf_counter, arrivals kernel-stamped)
    assert (samples["ms"] >= 0).all(), samples.loc[samples["ms"] < 0, ["name", "ms"]]
    assert {"connect", "auth", "ping", "turn:ttfe", "turn:gap"} <= set(samples["name"])


def test_counts_equal_the_copies_sent_when_the_run_ends_between_turns(tmp_path):
    # Five messages a minute per connection: each user has five whole turns, and its sixth
    # message is refused (an error frame, no turn), so no turn is under way when the run
    # stops and every copy the target sent has been read.
    _, samples, counters = run(
        tmp_path,
        ["--duplicate-terminal", "1.0", "--messages-per-minute", "5"],
        *("--heartbeat-interval", "0", "--event-timeout", "30", "--turn-timeout", "60"),
        seconds=3,
    )
    rows = duplicates(samples)
    turns = samples.loc[samples["name"] == "turn:e2e"]
    assert counters["turns_completed"] == len(turns) == 5 * USERS and turns["ok"].all()
    assert counters["duplicated_terminal_events"] == len(rows) == 5 * USERS
    assert counters["rate_limited"] == USERS
    assert rows.groupby("session").size().eq(5).all()  # five per session: one per turn


class LateCopyBackend:
    """Holds back a copy of each turn's terminal event and sends it when the next message
    comes, before that turn's events: the copy always arrives in the next turn."""

    def __init__(self, *, run_ids: bool) -> None:
        self.run_ids = run_ids
        self.copies = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the backend did not start"

    def _serve(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            async with serve(self._handle, "127.0.0.1", 0, subprotocols=["jwt-auth"]) as server:
                self.port = server.sockets[0].getsockname()[1]
                ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _handle(self, ws: Any) -> None:
        offered = ws.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
        token = next(p.strip()[9:] for p in offered if p.strip().startswith("jwt-auth."))
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            audience="netra-platform",
            issuer="netra-auth-service",
        )
        user = claims["sub"]
        await ws.send(json.dumps({"type": "connection_established", "data": {"user_id": user}}))
        held: str | None = None
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            if message.get("type") != "user_message":
                continue
            if held is not None:
                await ws.send(held)
                self.copies += 1
            ids = {"user_id": user, "thread_id": message["payload"]["thread_id"]}
            if self.run_ids:
                ids["run_id"] = f"run_{uuid.uuid4().hex}"
            for seq, name in enumerate(("agent_started", "agent_thinking", "agent_completed")):
                held = json.dumps({"type": name, **ids, "seq": seq, "timestamp": time.time()})
                await ws.send(held)


@pytest.mark.parametrize("run_ids", [True, False], ids=["by-run-id", "by-identical-frame"])
def test_a_copy_that_arrives_in_the_next_turn_is_a_duplicate_not_that_turns_event(
    tmp_path, run_ids
):
    backend = LateCopyBackend(run_ids=run_ids)
    try:
        _, samples = locust(
            tmp_path, f"ws://127.0.0.1:{backend.port}/ws", "--heartbeat-interval", "0", seconds=3
        )
    finally:
        backend.stop()
    rows = duplicates(samples)
    turns = samples.loc[samples["name"] == "turn:e2e"]
    assert len(turns) > 100 and turns["ok"].all(), turns.loc[~turns["ok"], "failure"].head()
    failed = samples.loc[~samples["ok"]]
    assert set(failed["name"]) == {"session:duplicate"}, failed["name"].value_counts()
    # The copy of a turn comes before the next turn's events on the same stream: a session
    # that recorded k turns has read at least k - 1 copies, and at most one more was sent.
    per_session = turns.groupby("session").size()
    seen = rows.groupby("session").size().reindex(per_session.index, fill_value=0)
    assert ((seen == per_session - 1) | (seen == per_session)).all()
    assert backend.copies - USERS <= len(rows) <= backend.copies
    how = r"\(run run_\w+\)" if run_ids else r"\(the same frame again\)"
    assert rows["detail"].str.fullmatch(rf"agent_completed after its turn ended {how}").all()
