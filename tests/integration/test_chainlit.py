"""wsload against a REAL Chainlit app (``chainlit run tests/chainlit_app/app.py``), as
``locust -f locustfiles/ws_auth.py --ws-profile chainlit`` loads one, held to the app's
known delays and to an independent Socket.IO client (python-socketio's own AsyncClient)
measuring the same app.

Chainlit names no user on its socket (its CONNECT ack is ``{"sid": ...}``, steps carry no
user), so identity is checked where Chainlit does expose it: ``GET /user`` with the cookie
wsload mints answers the token's ``identifier``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import pytest
import socketio

from wsload.config.options import websocket_url
from wsload.config.profile import load_profile
from wsload.config.tokens import TokenMinter
from wsload.net.client import ClientOptions
from wsload.net.probes import ProbeTokens, applicable_probes, run_probe
from wsload.run.summary import load_samples

REPO = Path(__file__).resolve().parents[2]
SECRET = "chainlit-test-secret-0123456789-abcdefghij"
TOOL_MS, TOKEN_MS, TOKENS = 60.0, 15.0, 5
PROFILE = load_profile("chainlit")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chainlit_app(tmp_path_factory):
    """A Chainlit app with password auth on a loopback port, in a folder of its own."""
    folder = tmp_path_factory.mktemp("chainlit")
    shutil.copy(REPO / "tests" / "chainlit_app" / "app.py", folder / "app.py")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "CHAINLIT_AUTH_SECRET": SECRET,
        "APP_PASSWORD": "app-password",
        "TOOL_MS": str(TOOL_MS),
        "TOKEN_MS": str(TOKEN_MS),
        "TOKENS": str(TOKENS),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "chainlit", "run", "app.py", "--headless"]
        + ["--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/auth/config", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("chainlit did not start")
            time.sleep(0.2)
    yield base
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def wsload_run(tmp_path: Path, base: str) -> tuple[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
        + ["-u", "1", "-r", "1", "-t", "12s", "--host", base, "--ws-profile", "chainlit"]
        + ["--think-time", "0.1", "--probe-users", "0", "--only-summary"]
        + ["--results", str(tmp_path / "run")],
        cwd=REPO,
        env={**os.environ, "JWT_SECRET_KEY": SECRET},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out[-3000:]
    return out, load_samples(tmp_path / "run")


async def independent_turns(base: str, token: str, turns: int) -> dict[str, list[float]]:
    """The same measurements by python-socketio's client (ttft and e2e from the turn's
    first event, task_start; the tool span; the gaps between tokens)."""
    # aiohttp keeps no cookie for an IP address host unless its jar is told to
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    client = socketio.AsyncClient(reconnection=False, http_session=http)
    got: dict[str, list[float]] = {"tool": [], "e2e": [], "ttft": [], "itl": [], "lag": []}
    state: dict[str, float] = {}
    done = asyncio.Event()

    @client.on("task_start")
    async def task_start(_: dict) -> None:
        state.setdefault("first", time.perf_counter())

    @client.on("new_message")
    async def new_message(step: dict) -> None:
        if step.get("type") == "tool":
            state["tool"] = time.perf_counter()

    @client.on("update_message")
    async def update_message(step: dict) -> None:
        if step.get("type") == "tool" and "tool" in state:
            got["tool"].append((time.perf_counter() - state.pop("tool")) * 1000.0)

    @client.on("stream_start")
    @client.on("stream_token")
    async def token_event(_: dict) -> None:
        now = time.perf_counter()
        if "token" not in state:
            got["ttft"].append((now - state["first"]) * 1000.0)
        else:
            got["itl"].append((now - state["token"]) * 1000.0)
        state["token"] = now

    @client.on("task_end")
    async def task_end(_: dict) -> None:
        if "sent" in state:
            got["e2e"].append((time.perf_counter() - state["first"]) * 1000.0)
        done.set()

    await client.connect(
        base,
        socketio_path="/ws/socket.io",
        transports=["websocket"],
        headers={"Cookie": f"access_token={token}"},
        auth={"clientType": "webapp", "sessionId": str(uuid.uuid4()), "userEnv": "{}"},
    )

    async def watch_lag() -> None:  # how late this client's own loop runs: its error bar
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            got["lag"].append((time.perf_counter() - start - 0.01) * 1000.0)

    watcher = asyncio.get_running_loop().create_task(watch_lag())
    await client.emit("connection_successful")
    await asyncio.wait_for(done.wait(), 10)
    for _ in range(turns):
        done.clear()
        state.clear()
        step = {"id": str(uuid.uuid4()), "name": "User", "type": "user_message"}
        step |= {"output": "hello", "createdAt": "2025-01-01T00:00:00.000Z"}
        state["sent"] = time.perf_counter()
        await client.emit("client_message", {"message": step, "fileReferences": []})
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.1)
    watcher.cancel()
    await client.disconnect()
    await http.close()
    return got


def median_of(samples, name: str) -> float:
    rows = samples.loc[(samples["name"] == name) & samples["ok"]]
    assert len(rows) >= 5, name
    return float(rows["ms"].median())


def test_a_real_chainlit_app_loads_as_a_browser_tab_with_its_known_delays(chainlit_app, tmp_path):
    # The independent client, a process of its own, measures while wsload runs: both see
    # the app (and this shared machine) under the same load.
    independent = subprocess.Popen(
        [sys.executable, __file__, chainlit_app, "40"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    _, samples = wsload_run(tmp_path, chainlit_app)
    theirs_raw = json.loads(independent.communicate(timeout=60)[0])
    turns = samples.loc[samples["name"] == "turn:e2e"]
    assert len(turns) >= 10 and turns["ok"].all(), turns["failure"].value_counts()
    sessions = samples.loc[(samples["kind"] == "session") & ~samples["ok"]]
    assert sessions.empty, sessions[["name", "failure", "detail"]]
    connects = samples.loc[samples["name"].isin(["connect", "auth"])]
    assert connects["ok"].all()
    # Two clients send differently (python-socketio queues each emit for a writer task, a
    # few ms under load; wsload writes the frame at once), so the times from the send are
    # compared from the turn's first event on (task_start: the app has the message), the
    # spans and gaps as they are.
    ours = {
        "tool": median_of(samples, "turn:tool"),
        "itl": median_of(samples, "turn:itl"),
        "ttft": per_turn_median(samples, "turn:ttft"),
        "e2e": per_turn_median(samples, "turn:e2e"),
    }
    theirs = {name: statistics.median(values) for name, values in theirs_raw.items()}
    # The reference stamps events when its asyncio loop gets to them (wsload: the kernel's
    # receive time): on a busy machine the reference's own worst loop lag is its error bar,
    # so the medians agree within 2 ms plus that (2 ms on a quiet machine).
    lag = max(theirs_raw["lag"])
    print(f"wsload {ours}\npython-socketio {theirs}\nits worst loop lag {lag:.2f} ms")
    for name in ours:
        assert abs(ours[name] - theirs[name]) <= 2.0 + lag, (name, ours, theirs, lag)
    # the known delays, which no measurement can beat: the tool step, then TOKENS tokens
    # TOKEN_MS apart (how much later the app runs is its machine's business: a busy machine's
    # asyncio sleeps overshoot, and the independent client above sees the same)
    assert ours["tool"] >= TOOL_MS - 2 and ours["itl"] >= TOKEN_MS - 2, ours
    assert ours["ttft"] >= TOOL_MS + TOKEN_MS and ours["e2e"] >= TOOL_MS + TOKENS * TOKEN_MS


def per_turn_median(samples, name: str) -> float:
    """The median over turns of ``name`` minus the turn's first event (turn:ttfe)."""
    rows = samples.loc[samples["name"].isin([name, "turn:ttfe"]) & samples["ok"]]
    table = rows.pivot_table(index=["session", "turn"], columns="name", values="ms")
    assert len(table) >= 5, name
    return float((table[name] - table["turn:ttfe"]).median())


def test_identity_where_chainlit_exposes_it_the_minted_cookie_is_its_user(chainlit_app):
    token = TokenMinter(PROFILE.token, secret=SECRET).mint("wsload-alice")
    request = urllib.request.Request(
        f"{chainlit_app}/user", headers={"Cookie": f"access_token={token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        user = json.loads(answer.read())
    assert user["identifier"] == "wsload-alice"


def test_every_negative_probe_is_refused_by_chainlit(chainlit_app):
    minter = TokenMinter(PROFILE.token, secret=SECRET)
    url = websocket_url(chainlit_app, PROFILE)
    tokens = ProbeTokens(minter)
    options = ClientOptions(connect_timeout_s=3.0, handshake_timeout_s=3.0, ack_timeout_s=3.0)
    for probe in applicable_probes(PROFILE):
        result = run_probe(probe, PROFILE, url, tokens, "wsload-prober", options)
        assert result.ok and result.failure is None, (probe, result)


if __name__ == "__main__":  # the independent client: python tests/.../test_chainlit.py BASE N
    time.sleep(2.0)  # Locust's start-up
    token = TokenMinter(PROFILE.token, secret=SECRET).mint("independent")
    print(json.dumps(asyncio.run(independent_turns(sys.argv[1], token, int(sys.argv[2])))))
