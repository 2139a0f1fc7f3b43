"""`wsload har` on recordings of real Chromium sessions against real servers.

Each recording is made here: headless Chromium runs a chat page against a backend while the
DevTools protocol reports its network events, and the HAR is written in DevTools' layout
(tests/har_recording.py). The generated profile must pass `wsload profile check`, and a real
Locust run with it must load the same server with no failure and produce the same stats
names as a run with the hand-written profile. No secret of a recording may appear in
anything `wsload har` writes or prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import jwt
import pytest
from browser_support import requires_chromium
from har_recording import SOCKETIO_CLIENT, json_chat, record, record_app, socketio_chat

from wsload.config.profile import Profile, load_profile
from wsload.config.tokens import TokenMinter
from wsload.run.summary import load_samples

pytestmark = [requires_chromium, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-0123456789-abcdefghijklmnop"  # the reference target's (conftest)
OTHER_SECRET = "other-backend-secret-0123456789abcdef"
SOCKETIO_SECRET = "socketio-secret-0123456789abcdefghij"
CHAINLIT_SECRET = "chainlit-secret-0123456789abcdefghijklmnop"
HAS_SOCKETIO = "transport" in Profile.__dataclass_fields__  # the Socket.IO transport
MESSAGES = ["Summarise my open tickets.", "Which service failed most?", "Draft a short reply."]


def _server(script: str, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / script)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, int(process.stdout.readline())


def wsload_har(har: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wsload.cli", "har", str(har), "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def locust_names(host: str, profile: Path, secret: str, results: Path, *extra: str) -> set[str]:
    """A short real Locust run; the stats names it recorded (every sample must be ok)."""
    env = {**os.environ, "JWT_SECRET_KEY": secret}
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "ws_auth.py")]
        + ["--headless", "--only-summary", "--loglevel", "WARNING", "-u", "4", "-r", "4"]
        + ["-t", "4s", "--think-time", "0.2", "--host", host, "--ws-profile", str(profile)]
        + ["--results", str(results), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    samples = load_samples(results)
    samples = samples.loc[samples["kind"] != "health"]
    assert samples["ok"].all(), samples.loc[~samples["ok"].astype(bool)].head().to_string()
    assert "failures: none" in run.stdout
    return set(samples["name"])


def protocol_names(names: set[str]) -> set[str]:
    """The names the profile decides; which security probes a short run reaches varies."""
    return {n for n in names if not n.startswith(("probe:", "conformance:"))}


@pytest.fixture(scope="module")
def target_recording(tmp_path_factory, target_factory):
    target = target_factory()
    token = TokenMinter(load_profile().token, secret=SECRET).mint("wsload-browser-1")
    steps: list[dict] = [{"wait": ["type", "connection_established"]}]
    for text in MESSAGES:
        message = {"type": "user_message", "payload": {"content": text, "thread_id": "t-7"}}
        steps += [{"send": message}, {"wait": ["type", "agent_completed"]}]
    steps += [{"send": {"type": "ping"}}, {"wait": ["type", "pong"]}]
    script = [
        {"protocols": ["jwt-auth", f"jwt-auth.{token}"], "steps": steps},
        {"protocols": ["jwt-auth", f"jwt-auth.{token[:-6]}AAAAAA"], "steps": [{"closed": True}]},
    ]
    folder = tmp_path_factory.mktemp("har-target")
    # the page adds a query parameter of its own (not a secret): it stays in the path
    har = record(json_chat(target.url + "?client=web", script), folder / "target.har")
    return har, token, target


def test_a_login_and_ticket_before_the_websocket_give_the_ticket_carrier_not_the_password(
    target_factory, tmp_path
):
    target = target_factory()
    password = "wsload-demo"  # the reference target's login password
    steps: list[dict] = [{"wait": ["type", "connection_established"]}]
    for text in MESSAGES[:2]:
        message = {"type": "user_message", "payload": {"content": text, "thread_id": "t-8"}}
        steps += [{"send": message}, {"wait": ["type", "agent_completed"]}]
    login = {"path": "/auth/login", "body": {"email": "ana@example.test", "password": password}}
    ticket, refresh = {"path": "/api/websocket/ticket"}, {"path": "/auth/refresh"}
    script = [{"login": login, "refresh": refresh, "ticket": ticket, "steps": steps}]
    har = record(json_chat(target.url, script), tmp_path / "ticket.har", proxy=target.http_url)
    made = wsload_har(har, tmp_path / "ticket.toml")
    assert made.returncode == 0 and "profile check: ok" in made.stdout, made.stdout + made.stderr
    profile = load_profile(tmp_path / "ticket.toml")
    auth = profile.auth
    assert (auth.carrier, auth.ticket_path, auth.ticket_param, auth.ticket_field) == (
        "ticket",
        "/api/websocket/ticket",
        "ticket",
        "ticket",
    )
    assert auth.login_path == "/auth/login" and profile.token.claims["email"] == "{sub}"
    assert auth.refresh_path == "/auth/refresh"
    answers = {
        e["request"]["url"].rsplit("/", 1)[1]: json.loads(e["response"]["content"]["text"])
        for e in json.loads(har.read_text())["log"]["entries"]
        if e["request"]["method"] == "POST"
    }
    secrets = [answers["ticket"]["ticket"], password]
    secrets += [answers["login"]["access_token"], answers["login"]["refresh_token"]]
    secrets += [answers["refresh"]["access_token"]]
    for text in [made.stdout, *(p.read_text() for p in tmp_path.glob("ticket*.t*"))]:
        assert not [s for s in secrets if s in text]
    generated = locust_names(target.url, tmp_path / "ticket.toml", SECRET, tmp_path / "gen")
    assert {"http:ticket", "turn:tool", "turn:e2e"} <= generated


def test_a_streamed_answer_gives_the_stream_keys_and_its_token_measures(target_factory, tmp_path):
    target = target_factory("--stream-tokens", "6")
    token = TokenMinter(load_profile().token, secret=SECRET).mint("wsload-browser-3")
    steps: list[dict] = [{"wait": ["type", "connection_established"]}]
    for text in MESSAGES:
        message = {"type": "user_message", "payload": {"content": text, "thread_id": "t-9"}}
        steps += [{"send": message}, {"wait": ["type", "agent_completed"]}]
    script = [{"protocols": ["jwt-auth", f"jwt-auth.{token}"], "steps": steps}]
    har = record(json_chat(target.url, script), tmp_path / "stream.har")
    made = wsload_har(har, tmp_path / "stream.toml")
    assert made.returncode == 0 and "profile check: ok" in made.stdout, made.stdout
    profile = load_profile(tmp_path / "stream.toml")
    assert (profile.stream.events, profile.stream.text_field) == (("stream_chunk",), "data.content")
    assert "stream_chunk+" in profile.events.sequence
    generated = locust_names(target.url, tmp_path / "stream.toml", SECRET, tmp_path / "gen")
    default = REPO / "wsload" / "profiles" / "default.toml"
    written = locust_names(target.url, default, SECRET, tmp_path / "hand")
    assert protocol_names(generated) == protocol_names(written)
    assert {"turn:ttft", "turn:itl", "turn:tpot", "turn:output_tokens"} <= generated


@pytest.fixture(scope="module")
def other_backend(tmp_path_factory):
    process, port = _server("other_backend.py", {"OTHER_SECRET": OTHER_SECRET})
    yield port
    process.kill()
    process.wait()


@pytest.fixture(scope="module", params=["query", "cookie"])
def other_recording(request, tmp_path_factory, other_backend):
    """The page's token in the WebSocket URL, or in a cookie the browser holds for the host."""
    profile = load_profile(REPO / "tests" / "data" / "other_backend.toml")
    token = TokenMinter(profile.token, secret=OTHER_SECRET).mint("tester-0001")
    url = f"ws://127.0.0.1:{other_backend}/chat/socket"
    cookies = None
    if request.param == "query":
        url += f"?access_token={token}"
    else:
        cookies = [{"name": "other_session", "value": token}]
    steps: list[dict] = [{"wait": ["event", "session.ready"]}]
    for text in MESSAGES:
        message = {"action": "ask", "text": text, "conversation": "conv-7"}
        steps += [{"send": message}, {"wait": ["event", "run.end"]}]
    folder = tmp_path_factory.mktemp(f"har-other-{request.param}")
    har = record(json_chat(url, [{"steps": steps}]), folder / "other.har", cookies=cookies)
    return har, token


@pytest.fixture(scope="module")
def other_written_names(tmp_path_factory, other_backend) -> set[str]:
    """The stats names of a run with the other backend's hand-written profile."""
    hand = REPO / "tests" / "data" / "other_backend.toml"
    native = ("--client-mode", "native")  # its header carrier is not one a browser can use
    host = f"ws://127.0.0.1:{other_backend}"
    results = tmp_path_factory.mktemp("other-hand") / "run"
    return locust_names(host, hand, OTHER_SECRET, results, *native)


def test_a_recording_of_the_reference_target_loads_it_like_the_default_profile(
    target_recording, tmp_path
):
    har, _token, target = target_recording
    made = wsload_har(har, tmp_path / "target.toml")
    assert made.returncode == 0, made.stderr
    assert "profile check: ok" in made.stdout
    check = subprocess.run(
        [sys.executable, "-m", "wsload.cli", "profile", "check", str(tmp_path / "target.toml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    profile = load_profile(tmp_path / "target.toml")
    assert profile.auth.carrier == "subprotocol" and profile.auth.subprotocol == "jwt-auth"
    assert profile.ack.user_id_field == "data.user_id"
    assert profile.endpoint.path == "/ws?client=web"
    assert profile.events.spans == (("tool_executing", "tool_completed"),)
    assert (tmp_path / "target-corpus.txt").read_text().splitlines() == MESSAGES
    corpus = ("--corpus", str(tmp_path / "target-corpus.txt"))  # the recorded messages
    generated = locust_names(
        target.url, tmp_path / "target.toml", SECRET, tmp_path / "gen", *corpus
    )
    default = REPO / "wsload" / "profiles" / "default.toml"
    written = locust_names(target.url, default, SECRET, tmp_path / "hand")
    assert protocol_names(generated) == protocol_names(written)
    assert {"turn:agent_thinking", "turn:tool", "turn:e2e"} <= generated


def test_a_recording_of_another_backend_loads_it_like_its_hand_written_profile(
    other_recording, other_backend, other_written_names, tmp_path
):
    har, _token = other_recording
    made = wsload_har(har, tmp_path / "other.toml")
    assert made.returncode == 0, made.stderr
    assert "profile check: ok" in made.stdout
    profile = load_profile(tmp_path / "other.toml")
    assert (profile.auth.carrier, profile.auth.query_param, profile.auth.cookie_name) in (
        ("query", "access_token", "access_token"),  # the cookie name is the default's
        ("cookie", "token", "other_session"),  # the query parameter is the default's
    )
    assert profile.events.sequence == "run.start run.step+ run.output run.end"
    assert profile.events.ignore == ("keepalive",) and not profile.events.frames_are_unique
    host = f"ws://127.0.0.1:{other_backend}"
    generated = locust_names(host, tmp_path / "other.toml", OTHER_SECRET, tmp_path / "gen")
    assert protocol_names(generated) == protocol_names(other_written_names)
    assert {"turn:run.step", "turn:run.output", "turn:e2e"} <= generated


@pytest.fixture(scope="module")
def socketio_backend():
    process, port = _server("har_socketio_backend.py", {"SOCKETIO_SECRET": SOCKETIO_SECRET})
    yield port
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def socketio_recording(tmp_path_factory, socketio_backend):
    if not (SOCKETIO_CLIENT / "node_modules" / "socket.io-client").is_dir():
        if shutil.which("npm") is None:
            pytest.skip("npm is missing: the Socket.IO JS client comes from npm ci")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SOCKETIO_CLIENT, check=True)
    port = socketio_backend
    now = int(time.time())
    claims = {"sub": "chat-user-1", "aud": "chat-app", "iat": now, "exp": now + 600}
    token = jwt.encode({**claims, "role": "member"}, SOCKETIO_SECRET, algorithm="HS256")
    base = {"url": f"http://127.0.0.1:{port}", "path": "/ws/socket.io", "emit": "client_message"}
    messages = [{"content": text, "thread_id": "th-1"} for text in MESSAGES]
    script = [  # as browsers connect: long-polling first, the CONNECT on it, then the upgrade
        {**base, "auth": {"token": token}, "transports": ["polling", "websocket"]}
        | {"messages": messages, "terminal": "task_end"},
        {**base, "auth": {"token": "not-a-token"}, "transports": ["polling", "websocket"]}
        | {"messages": [], "refused": True},
    ]
    html, files = socketio_chat(script)
    har = record(html, tmp_path_factory.mktemp("har-socketio") / "socketio.har", files=files)
    return har, token


def test_a_socketio_recording_whose_connect_went_over_polling_gives_the_socketio_keys(
    socketio_recording, tmp_path
):
    har, _token = socketio_recording
    entries = json.loads(har.read_text())["log"]["entries"]
    polled = [e for e in entries if "transport=polling" in e["request"]["url"]]
    assert any("40{" in (e["request"].get("postData") or {}).get("text", "") for e in polled)
    made = wsload_har(har, tmp_path / "chat.toml")
    text = (tmp_path / "chat.toml").read_text()
    # Keys this wsload does not know yet are written commented out: read them too.
    keyed = re.compile(r"^# (\[[a-z.]+\]|[A-Za-z_]+ = )")
    lines = text.splitlines()
    uncommented = "\n".join(line[2:] if keyed.match(line) else line for line in lines)

    profile = tomllib.loads(uncommented)
    assert profile["transport"] == {
        "framing": "socketio",
        "namespace": "/",
        "connect_auth": {"token": "{token}"},
        "open": "polling",
    }
    assert profile["endpoint"]["path"] == "/ws/socket.io"
    assert profile["auth"] == {"carrier": "connect", "subprotocol": ""}
    assert profile["chat"] == {
        "message": {"content": "{content}", "thread_id": "{thread_id}"},
        "emit": "client_message",
    }
    assert profile["stream"] == {"events": ["stream_token"], "text_field": "token"}
    events = profile["events"]
    assert events["sequence"] == "task_start stream_start stream_token+ new_message task_end"
    assert (events["thread_id_field"], events["run_id_field"]) == ("threadId", "runId")
    assert (events["user_id_field"], events["type_field"]) == ("userId", "event")
    assert profile["rejection"] == {
        "error_types": ["connect_error"],
        "error_code_field": "message",
        "auth_error_codes": [],
    }
    # nothing arrives before the first answer: the ack is Socket.IO's own CONNECT ack
    assert profile["ack"] == {
        "required": True,
        "user_id_field": "",
        "match": [{"event": "connect"}],
    }
    assert profile["token"]["audience"] == "chat-app" and profile["token"]["claims"] == {
        "role": "member"
    }
    if HAS_SOCKETIO:
        assert made.returncode == 0 and "profile check: ok" in made.stdout, made.stdout
    else:  # this wsload has no Socket.IO transport yet: the report says the check is not run
        assert made.returncode == 0 and "profile check: not run" in made.stdout


def test_no_secret_of_a_recording_appears_in_what_wsload_har_writes(
    target_recording, other_recording, socketio_recording, tmp_path
):
    for har, token in (target_recording[:2], other_recording, socketio_recording):
        out = tmp_path / har.stem
        made = wsload_har(har, out / "profile.toml")
        written = [p.read_text() for p in out.iterdir()] + [made.stdout, made.stderr]
        signature = token.rsplit(".", 1)[1]
        for text in written:
            assert token not in text and signature not in text
            assert SECRET not in text and OTHER_SECRET not in text
        assert "wsload mints its own tokens" in made.stdout  # the report says what to give


def _rewrite(har: Path, destination: Path, change) -> Path:
    document = json.loads(har.read_text())
    change(document["log"]["entries"])
    destination.write_text(json.dumps(document))
    return destination


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no-websocket", "holds no WebSocket"),
        ("without-content", "exported without content"),
        ("truncated", "is truncated"),
    ],
)
def test_a_recording_that_cannot_give_a_profile_says_why_in_one_message(
    target_recording, tmp_path, damage, message
):
    har = target_recording[0]
    broken = tmp_path / f"{damage}.har"
    if damage == "no-websocket":
        _rewrite(
            har,
            broken,
            lambda e: e.__setitem__(slice(None), [x for x in e if "_webSocketMessages" not in x]),
        )
    elif damage == "without-content":
        _rewrite(har, broken, lambda e: [x.pop("_webSocketMessages", None) for x in e])
    else:
        text = har.read_text()
        broken.write_text(text[: len(text) // 2])
    made = wsload_har(broken, tmp_path / "out.toml")
    assert made.returncode == 2
    assert message in made.stderr and "fix:" in made.stderr
    assert made.stderr.count("wsload: error:") == 1 and "Traceback" not in made.stderr
    assert not (tmp_path / "out.toml").exists()


@pytest.mark.skipif(not HAS_SOCKETIO, reason="this wsload has no Socket.IO transport")
def test_a_socketio_recording_loads_the_server_like_its_hand_written_profile(
    socketio_recording, socketio_backend, tmp_path
):
    har, _token = socketio_recording
    made = wsload_har(har, tmp_path / "chat.toml")
    assert made.returncode == 0 and "profile check: ok" in made.stdout, made.stdout
    host = f"http://127.0.0.1:{socketio_backend}"
    corpus = ("--corpus", str(tmp_path / "chat-corpus.txt"))
    generated = locust_names(host, tmp_path / "chat.toml", SOCKETIO_SECRET, tmp_path / "g", *corpus)
    hand = REPO / "tests" / "data" / "har_socketio_backend.toml"
    written = locust_names(host, hand, SOCKETIO_SECRET, tmp_path / "hand")
    assert protocol_names(generated) == protocol_names(written)
    assert {"turn:stream_token", "turn:task_end", "turn:e2e"} <= generated


def test_frames_without_times_give_the_same_profile(target_recording, tmp_path):
    har = target_recording[0]
    timeless = _rewrite(
        har,
        tmp_path / "timeless.har",
        lambda entries: [m.pop("time") for e in entries for m in e.get("_webSocketMessages", [])],
    )
    assert wsload_har(har, tmp_path / "a" / "p.toml").returncode == 0
    assert wsload_har(timeless, tmp_path / "b" / "p.toml").returncode == 0
    made = [
        (tmp_path / d / "p.toml").read_text().replace(n, "")
        for d, n in (("a", har.name), ("b", timeless.name))
    ]
    assert made[0] == made[1]


CHAINLIT_APP = REPO / "tests" / "chainlit_app" / "app.py"
STREAM_NAMES = {"turn:ttft", "turn:itl", "turn:tpot", "turn:output_tokens", "turn:tokens_per_s"}


@pytest.fixture(scope="module")
def chainlit_app(tmp_path_factory):
    """The Chainlit app of tests/chainlit_app run by ``chainlit run`` on a loopback port."""
    pytest.importorskip("chainlit")
    if not CHAINLIT_APP.is_file() or not HAS_SOCKETIO:
        pytest.skip("needs tests/chainlit_app and the Socket.IO transport")
    folder = tmp_path_factory.mktemp("chainlit")
    (folder / "app.py").write_text(CHAINLIT_APP.read_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CHAINLIT_AUTH_SECRET": CHAINLIT_SECRET, "APP_PASSWORD": "pw-0123456"}
    command = [sys.executable, "-m", "chainlit", "run", "app.py", "--headless"]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/", process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer (exit {process.poll()})")


def test_a_recording_of_a_real_chainlit_app_loads_it_like_the_chainlit_profile(
    chainlit_app, tmp_path
):
    def use_the_app(page) -> None:  # as a person would: log in, then chat in the UI
        page.fill("#email", "ana@example.test")
        page.fill("#password", "pw-0123456")
        page.click("button[type=submit]")
        page.wait_for_selector("#chat-input")
        for done, text in enumerate(MESSAGES, start=1):
            page.fill("#chat-input", text)
            page.click("#chat-submit")
            page.wait_for_function(
                f"document.body.innerText.split('tok4').length > {done}", timeout=20_000
            )

    har = record_app(f"http://127.0.0.1:{chainlit_app}/", tmp_path / "chainlit.har", use_the_app)
    made = wsload_har(har, tmp_path / "chainlit.toml")
    assert made.returncode == 0 and "profile check: ok" in made.stdout, made.stdout
    assert "pw-0123456" not in made.stdout + (tmp_path / "chainlit.toml").read_text()
    profile = load_profile(tmp_path / "chainlit.toml")
    assert (profile.auth.carrier, profile.auth.cookie_name) == ("cookie", "access_token")
    host = f"http://127.0.0.1:{chainlit_app}"
    generated = locust_names(host, tmp_path / "chainlit.toml", CHAINLIT_SECRET, tmp_path / "g")
    written = locust_names(
        host, REPO / "wsload" / "profiles" / "chainlit.toml", CHAINLIT_SECRET, tmp_path / "h"
    )
    # the same names, and the streamed-token measures the recording showed on top
    assert protocol_names(generated) == protocol_names(written) | STREAM_NAMES
