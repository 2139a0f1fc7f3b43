"""Browser recordings for ``wsload har`` tests: real headless Chromium, HARs as DevTools writes.

A page served from a loopback HTTP server runs a scripted chat against a real backend
while the Chrome DevTools protocol reports its network events. The HAR is built from
those events the way DevTools' own exporter builds it: an entry per HTTP request
(``Network.requestWillBeSent``/``responseReceived``, the body from
``Network.getResponseBody``), and per WebSocket an entry with ``_resourceType``
``websocket``, the handshake from ``webSocketWillSendHandshakeRequest``/
``webSocketHandshakeResponseReceived`` and the frames in ``_webSocketMessages``
(``type`` send/receive, ``time`` in epoch seconds, ``opcode``, ``data``).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from browser_support import chromium
from playwright.sync_api import Page

SOCKETIO_CLIENT = Path(__file__).resolve().parent / "socketio_client"

# A scripted chat: sessions one after another, each a list of steps.
# {"send": obj} sends JSON; {"wait": [dotted field, value]} waits for a server message
# with that value; {"closed": true} waits for the server to close. A session with
# "login": {"path", "body"} first POSTs the body as JSON and takes the answer's
# access_token ("refresh": {"path"} then renews it); "ticket": {"path"} then POSTs that
# token to the path and connects with ?ticket= from the answer (the page server passes
# POSTs on to the backend).
JSON_PAGE = """<!doctype html><title>chat</title><script>
const script = %s;
function get(obj, path) { return path.split('.').reduce((o, k) => o == null ? o : o[k], obj); }
async function session(s) {
  let url = s.url;
  let token = s.token;
  if (s.login) {  // log in first, as a frontend does
    const answer = await fetch(s.login.path, {method: 'POST',
      headers: {'Content-Type': 'application/json'}, body: JSON.stringify(s.login.body)});
    const pair = await answer.json();
    token = pair.access_token;
    if (s.refresh) {  // and trade the refresh token for a new access token
      const renewed = await fetch(s.refresh.path, {method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({refresh_token: pair.refresh_token})});
      token = (await renewed.json()).access_token;
    }
  }
  if (s.ticket) {  // trade the token for a one-time ticket
    const answer = await fetch(s.ticket.path, {method: 'POST',
      headers: {'Authorization': 'Bearer ' + token}});
    url += '?ticket=' + encodeURIComponent((await answer.json()).ticket);
  }
  const ws = new WebSocket(url, s.protocols || []);
  const seen = []; let closed = false; let wake = () => {};
  ws.onmessage = (e) => { seen.push(JSON.parse(e.data)); wake(); };
  ws.onclose = () => { closed = true; wake(); };
  let at = 0;
  const until = (test) => new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('timeout in ' + JSON.stringify(s.steps))), 10000);
    const check = () => {
      while (at < seen.length) { if (test(seen[at++])) { clearTimeout(timer); resolve(); return; } }
      if (test(null)) { clearTimeout(timer); resolve(); return; }
      wake = check;
    };
    check();
  });
  await new Promise((resolve) => {
    ws.onopen = resolve; ws.onerror = resolve; setTimeout(resolve, 3000);
  });
  for (const step of s.steps) {
    if (step.send) ws.send(JSON.stringify(step.send));
    if (step.wait) await until((m) => m !== null && get(m, step.wait[0]) === step.wait[1]);
    if (step.closed) await until((m) => m === null && closed);
    if (step.sleep) await new Promise((r) => setTimeout(r, step.sleep));
  }
  ws.close();
  await new Promise((r) => setTimeout(r, 100));
}
(async () => {
  try { for (const s of script) await session(s); window.done = 'ok'; }
  catch (e) { window.done = 'failed: ' + e; }
})();
</script>"""

SOCKETIO_PAGE = """<!doctype html><title>chat</title>
<script src="/socket.io.min.js"></script><script>
const script = %s;
(async () => {
  try {
    for (const s of script) {
      const socket = io(s.url, {path: s.path, auth: s.auth, transports: s.transports,
                                reconnection: false});
      if (s.refused) {
        await new Promise((resolve) => socket.on('connect_error', resolve));
        socket.close();
        continue;
      }
      await new Promise((resolve, reject) => {
        socket.on('connect', resolve); socket.on('connect_error', reject);
      });
      if (s.transports.length > 1 && socket.io.engine.transport.name !== 'websocket')
        await new Promise((resolve) => socket.io.engine.on('upgrade', resolve));
      for (const message of s.messages) {
        const done = new Promise((resolve) => socket.once(s.terminal, resolve));
        socket.emit(s.emit, message);
        await done;
      }
      socket.close();
      await new Promise((r) => setTimeout(r, 100));
    }
    window.done = 'ok';
  } catch (e) { window.done = 'failed: ' + e; }
})();
</script>"""


class _Pages(BaseHTTPRequestHandler):
    def __init__(self, files: dict[str, tuple[str, bytes]], proxy: str, *args: Any) -> None:
        self.files = files
        self.proxy = proxy
        super().__init__(*args)

    def do_POST(self) -> None:  # a frontend's reverse proxy to the backend's HTTP API
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {"Authorization": self.headers.get("Authorization", "")}
        request = urllib.request.Request(self.proxy + self.path, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, data = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, data = error.code, error.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        found = self.files.get(self.path.split("?")[0])
        if found is None:
            self.send_error(404)
            return
        kind, body = found
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def page_server(files: dict[str, tuple[str, bytes]], proxy: str = "") -> Iterator[str]:
    """A loopback HTTP server of ``files`` (path -> content type, body) that passes POSTs on
    to ``proxy``; yields its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Pages, files, proxy))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class HarBuilder:
    """Collects CDP Network events and writes them out in DevTools' HAR layout."""

    def __init__(self) -> None:
        self.http: dict[str, dict[str, Any]] = {}
        self.sockets: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.extra: dict[str, dict[str, str]] = {}
        self.extra_response: dict[str, dict[str, str]] = {}

    def attach(self, cdp: Any) -> None:
        for name in (
            "requestWillBeSent",
            "requestWillBeSentExtraInfo",
            "responseReceivedExtraInfo",
            "responseReceived",
            "loadingFinished",
            "webSocketCreated",
            "webSocketWillSendHandshakeRequest",
            "webSocketHandshakeResponseReceived",
            "webSocketFrameSent",
            "webSocketFrameReceived",
        ):
            cdp.on(f"Network.{name}", partial(self._on, name))

    def _on(self, name: str, params: dict[str, Any]) -> None:
        rid = params.get("requestId", "")
        if name == "requestWillBeSent":
            if params.get("type") == "WebSocket" or rid in self.sockets:
                return
            self.order.append(rid) if rid not in self.http else None
            self.http[rid] = {"request": params["request"], "wallTime": params["wallTime"]}
        elif name == "requestWillBeSentExtraInfo":
            # The headers as sent on the wire (cookies included), as DevTools merges them.
            self.extra[rid] = params.get("headers", {})
        elif name == "responseReceivedExtraInfo":
            self.extra_response[rid] = params.get("headers", {})  # Set-Cookie included
        elif name == "responseReceived" and rid in self.http:
            self.http[rid]["response"] = params["response"]
        elif name == "loadingFinished" and rid in self.http:
            self.http[rid]["finished"] = True
        elif name == "webSocketCreated":
            self.order.append(rid)
            self.sockets[rid] = {"id": rid, "url": params["url"], "frames": []}
        elif name == "webSocketWillSendHandshakeRequest" and rid in self.sockets:
            self.sockets[rid].update(wallTime=params["wallTime"], request=params["request"])
            self.sockets[rid]["timestamp"] = params["timestamp"]
        elif name == "webSocketHandshakeResponseReceived" and rid in self.sockets:
            self.sockets[rid]["response"] = params["response"]
        elif name in ("webSocketFrameSent", "webSocketFrameReceived") and rid in self.sockets:
            socket = self.sockets[rid]
            # DevTools' exporter: wall time of the handshake plus the monotonic offset.
            offset = params["timestamp"] - socket.get("timestamp", params["timestamp"])
            frame = params["response"]
            socket["frames"].append(
                {
                    "type": "send" if name == "webSocketFrameSent" else "receive",
                    "time": socket.get("wallTime", 0.0) + offset,
                    "opcode": frame["opcode"],
                    "data": frame["payloadData"],
                }
            )

    def fetch_bodies(self, cdp: Any) -> None:
        """Response bodies and POST bodies, asked for after the page is done (as DevTools
        does when it exports)."""
        for rid, entry in self.http.items():
            request = entry["request"]
            if request.get("hasPostData") and "postData" not in request:
                try:
                    request["postData"] = cdp.send(
                        "Network.getRequestPostData", {"requestId": rid}
                    )["postData"]
                except Exception:
                    request["postData"] = ""
            if entry.get("finished"):
                try:
                    entry["body"] = cdp.send("Network.getResponseBody", {"requestId": rid})
                except Exception:
                    entry["body"] = None

    def har(self) -> dict[str, Any]:
        entries = []
        for rid in self.order:
            if rid in self.sockets:
                entries.append(self._socket_entry(self.sockets[rid]))
            elif "response" in self.http.get(rid, {}):
                entries.append(self._http_entry(rid, self.http[rid]))
        return {
            "log": {
                "version": "1.2",
                "creator": {"name": "WebInspector", "version": "537.36"},
                "pages": [],
                "entries": entries,
            }
        }

    @staticmethod
    def _headers(headers: dict[str, str]) -> list[dict[str, str]]:
        out = []
        for name, value in headers.items():
            out.extend({"name": name, "value": v} for v in str(value).split("\n"))
        return out

    @staticmethod
    def _started(wall_time: float) -> str:
        return datetime.fromtimestamp(wall_time, UTC).isoformat().replace("+00:00", "Z")

    def _http_entry(self, rid: str, entry: dict[str, Any]) -> dict[str, Any]:
        request, response = entry["request"], entry["response"]
        har_request: dict[str, Any] = {
            "method": request["method"],
            "url": request["url"],
            "httpVersion": "HTTP/1.1",
            "headers": self._headers(
                {
                    **request["headers"],
                    **response.get("requestHeaders", {}),
                    **self.extra.get(rid, {}),
                }
            ),
            "queryString": [],
            "cookies": [],
            "headersSize": -1,
            "bodySize": len(request.get("postData", "")),
        }
        if request.get("postData"):
            kind = request["headers"].get("Content-Type", "text/plain")
            har_request["postData"] = {"mimeType": kind, "text": request["postData"]}
        body = entry.get("body") or {}
        content = {"size": len(body.get("body", "")), "mimeType": response.get("mimeType", "")}
        if body:
            content["text"] = body["body"]
            if body.get("base64Encoded"):
                content["encoding"] = "base64"
        return {
            "_resourceType": "fetch",
            "startedDateTime": self._started(entry["wallTime"]),
            "time": 0,
            "request": har_request,
            "response": {
                "status": response["status"],
                "statusText": response.get("statusText", ""),
                "httpVersion": "HTTP/1.1",
                "headers": self._headers(
                    {**response["headers"], **self.extra_response.get(rid, {})}
                ),
                "cookies": [],
                "content": content,
                "redirectURL": "",
                "headersSize": -1,
                "bodySize": -1,
            },
            "cache": {},
            "timings": {"send": 0, "wait": 0, "receive": 0},
        }

    def _socket_entry(self, socket: dict[str, Any]) -> dict[str, Any]:
        response = socket.get("response", {})
        # The headers actually sent (cookies included) come with the response, as in DevTools.
        # Headers the page added (setExtraHTTPHeaders) are only in the handshake request.
        sent = {
            **socket.get("request", {}).get("headers", {}),
            **response.get("requestHeaders", {}),
            **self.extra.get(socket["id"], {}),
        }
        return {
            "_resourceType": "websocket",
            "startedDateTime": self._started(socket.get("wallTime", 0.0)),
            "time": 0,
            "request": {
                "method": "GET",
                "url": socket["url"],
                "httpVersion": "HTTP/1.1",
                "headers": self._headers(sent),
                "queryString": [],
                "cookies": [],
                "headersSize": -1,
                "bodySize": 0,
            },
            "response": {
                "status": response.get("status", 0),
                "statusText": response.get("statusText", ""),
                "httpVersion": "HTTP/1.1",
                "headers": self._headers(response.get("headers", {})),
                "cookies": [],
                "content": {"size": 0, "mimeType": "x-unknown"},
                "redirectURL": "",
                "headersSize": -1,
                "bodySize": 0,
            },
            "cache": {},
            "timings": {"send": 0, "wait": 0, "receive": 0},
            "_webSocketMessages": socket["frames"],
        }


def record(
    html: str,
    destination: Path,
    *,
    files: dict[str, tuple[str, bytes]] | None = None,
    cookies: list[dict[str, Any]] | None = None,
    proxy: str = "",
) -> Path:
    """Serve ``html`` at /, let headless Chromium run it to ``window.done``, save the HAR."""
    pages = {"/": ("text/html", html.encode()), **(files or {})}

    def run_script(page: Page) -> None:
        page.wait_for_function("window.done !== undefined", timeout=30_000)
        outcome = page.evaluate("window.done")
        assert outcome == "ok", outcome

    with page_server(pages, proxy) as origin:
        return record_app(origin + "/", destination, run_script, cookies=cookies)


def record_app(
    url: str,
    destination: Path,
    act: Callable[[Page], None],
    *,
    cookies: list[dict[str, Any]] | None = None,
) -> Path:
    """Open ``url`` in headless Chromium, let ``act`` use the app, save the HAR."""
    builder = HarBuilder()
    with chromium(destination.parent / "chromium-profile") as context:
        if cookies:
            context.add_cookies([{"url": url, **c} for c in cookies])
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        builder.attach(cdp)
        cdp.send("Network.enable")
        page.goto(url)
        act(page)
        builder.fetch_bodies(cdp)
    destination.write_text(json.dumps(builder.har(), indent=2))
    return destination


def json_chat(url: str, script: list[dict[str, Any]]) -> str:
    return JSON_PAGE % json.dumps([{"url": url, **s} for s in script])


def socketio_chat(script: list[dict[str, Any]]) -> tuple[str, dict[str, tuple[str, bytes]]]:
    client = SOCKETIO_CLIENT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
    files = {"/socket.io.min.js": ("application/javascript", client.read_bytes())}
    return SOCKETIO_PAGE % json.dumps(script), files
