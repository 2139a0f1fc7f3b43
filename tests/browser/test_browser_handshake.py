"""wsload's upgrade request carries what headless Chromium's does for the same WebSocket.

A page served from http://localhost sets the token cookie and opens
``new WebSocket(url, ["jwt-auth", "jwt-auth.<jwt>"])`` against a raw capture server that
records the request bytes and answers a valid 101. wsload then sends its own upgrade for
the same URL, subprotocols, Origin and cookie to the same server, and the headers a
backend's auth and origin checks read are compared, with the compression offer
(``Sec-WebSocket-Extensions``): the server agrees to it for both, and wsload's session is
compressed as Chromium's is. The rest (User-Agent, Accept-Language, ...) is listed, not
asserted, in ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import queue
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from browser_support import artifact, chromium, requires_chromium

from wsload.net.client import ClientOptions, connect
from wsload.protocol.carrier import Placement, place
from wsload.protocol.upgrade import accept_for

pytestmark = requires_chromium
SUBJECT = "wsload-browser-1"
# The headers a backend's handshake, origin and auth checks read, compared exactly.
EXACT = ("Host", "Origin", "Sec-WebSocket-Version", "Cookie", "Sec-WebSocket-Extensions")
SHOWN = (*EXACT, "Upgrade", "Connection", "Sec-WebSocket-Protocol", "Sec-WebSocket-Key")

Head = tuple[str, list[tuple[str, str]]]  # request line, headers in the order sent


def parse_request(data: bytes) -> Head:
    """A request head split by hand, independent of wsload's own parser."""
    line, *rest = data.decode("latin-1").split("\r\n")
    headers = []
    for text in rest:
        if text:
            name, _, value = text.partition(":")
            headers.append((name.strip(), value.strip()))
    return line, headers


def header(head: Head, name: str) -> str | None:
    values = [v for n, v in head[1] if n.lower() == name.lower()]
    return ", ".join(values) if values else None


def tokens(value: str | None) -> list[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def valid_key(value: str | None) -> bool:
    try:
        return len(base64.b64decode(value or "", validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def shorten(value: str | None, width: int = 44) -> str:
    if value is None:
        return "(absent)"
    return value if len(value) <= width else value[: width - 15] + "..." + value[-12:]


def side_by_side(chromium_head: Head, wsload_head: Head, names: list[str]) -> str:
    rows = [("header", "Chromium", "wsload"), ("request line", chromium_head[0], wsload_head[0])]
    rows += [(n, header(chromium_head, n), header(wsload_head, n)) for n in names]
    return "\n".join(f"  {n:<26} {shorten(a):<46} {shorten(b)}" for n, a, b in rows)


def compare(chromium_head: Head, wsload_head: Head) -> tuple[str, str]:
    """The side-by-side table, and a report adding the other differences and the orders."""
    names = sorted(
        {n for n, _ in chromium_head[1]} | {n for n, _ in wsload_head[1]},
        key=lambda n: (n not in SHOWN, SHOWN.index(n) if n in SHOWN else 0, n.lower()),
    )
    table = side_by_side(chromium_head, wsload_head, names)
    lines = [table, "", "other headers that differ (not asserted):"]
    for name in names:
        ours, theirs = header(wsload_head, name), header(chromium_head, name)
        if name not in SHOWN and ours != theirs:
            lines += [f"  {name}", f"    Chromium: {theirs}", f"    wsload:   {ours}"]
    lines += ["", "order sent:"]
    for who, head in (("Chromium", chromium_head), ("wsload", wsload_head)):
        lines.append(f"  {who}: {', '.join(n for n, _ in head[1])}")
    return table, "\n".join(lines) + "\n"


def capture_and_accept(conn: socket.socket, heads: queue.Queue, subprotocol: str) -> None:
    """Record one upgrade request, answer 101 and the profile's ack, then drain until closed."""
    conn.settimeout(10)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        heads.put(head)
        request = parse_request(head)
        key = header(request, "Sec-WebSocket-Key") or ""
        offer = header(request, "Sec-WebSocket-Extensions") or ""
        # agree as common servers do: the ack below goes uncompressed (RSV1 clear), allowed
        agreed = "permessage-deflate\r\n" if "permessage-deflate" in offer else ""
        ack = json.dumps({"type": "connection_established", "data": {"user_id": SUBJECT}})
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_for(key)}\r\n".encode()
            + (f"Sec-WebSocket-Extensions: {agreed}" if agreed else "").encode()
            + f"Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n".encode()
            + bytes((0x81, len(ack)))
            + ack.encode()
        )
        while conn.recv(4096):
            pass


def page_html(ws_url: str, protocols: tuple[str, ...], cookie: tuple[str, str]) -> bytes:
    script = f"""
      document.cookie = {json.dumps(f"{cookie[0]}={cookie[1]}")};
      const ws = new WebSocket({json.dumps(ws_url)}, {json.dumps(list(protocols))});
      ws.onopen = () => {{ document.title = "open"; ws.close(1000); }};
      ws.onerror = () => {{ document.title = "error"; }};
    """
    return f"<!doctype html><title>page</title><script>{script}</script>".encode()


class _Page(BaseHTTPRequestHandler):
    def __init__(self, body: bytes, *args, **kwargs) -> None:
        self.body = body
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def page_server(body: bytes) -> Iterator[int]:
    """The page over HTTP on loopback, in a thread; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Page, body))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_wsload_sends_the_origin_subprotocols_cookie_and_key_chromium_sends(
    raw_server, profile, minter, tmp_path
):
    token = minter.mint(SUBJECT)
    heads: queue.Queue[bytes] = queue.Queue()
    capture = raw_server(partial(capture_and_accept, heads=heads, subprotocol="jwt-auth"))
    ws_url = f"ws://localhost:{capture.port}/ws"
    offered = place(profile.auth, ws_url, token)  # the profile's subprotocol carrier
    cookie = (profile.auth.cookie_name, token)
    body = page_html(ws_url, offered.subprotocols, cookie)

    with page_server(body) as page_port, chromium(tmp_path / "chromium") as browser:
        origin = f"http://localhost:{page_port}"
        page = browser.new_page()
        page.goto(origin + "/")
        page.wait_for_function("document.title !== 'page'", timeout=15_000)
        assert page.title() == "open", "Chromium did not open the WebSocket to the capture server"
    chromium_head = parse_request(heads.get(timeout=10))

    placement = Placement(
        ws_url,
        subprotocols=offered.subprotocols,
        cookies=(cookie,),
        carrier=offered.carrier,
        material=offered.material,
    )
    session = connect(
        ws_url, profile, placement, expected_subject=SUBJECT, options=ClientOptions(origin=origin)
    )
    agreed = session.session.extensions
    session.close(timeout=1.0)
    wsload_head = parse_request(heads.get(timeout=10))

    table, report = compare(chromium_head, wsload_head)
    artifact("browser-handshake.txt").write_text(report)
    print(report)
    why = f"wsload's upgrade differs from Chromium's:\n{table}"

    assert chromium_head[0] == wsload_head[0] == "GET /ws HTTP/1.1", why
    for name in EXACT:
        assert header(chromium_head, name) is not None, why
        assert header(chromium_head, name) == header(wsload_head, name), f"{name}: {why}"
    protocols = tokens(header(chromium_head, "Sec-WebSocket-Protocol"))
    assert protocols == list(offered.subprotocols), why
    assert tokens(header(wsload_head, "Sec-WebSocket-Protocol")) == protocols, why
    for name, token_ in (("Upgrade", "websocket"), ("Connection", "upgrade")):
        ours, theirs = (
            {t.lower() for t in tokens(header(h, name))} for h in (wsload_head, chromium_head)
        )
        assert token_ in theirs and ours == theirs, f"{name}: {why}"
    assert valid_key(header(chromium_head, "Sec-WebSocket-Key")), why
    assert valid_key(header(wsload_head, "Sec-WebSocket-Key")), why
    assert header(chromium_head, "Sec-WebSocket-Extensions") == (
        "permessage-deflate; client_max_window_bits"
    ), why
    assert agreed == "permessage-deflate", "wsload did not take the compression it was given"
