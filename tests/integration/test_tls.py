"""wss:// against real TLS servers with certificates the tests make (trustme).

The reference target serves TLS (aiohttp on Python's ssl); a tiny independent TLS server
records what the client's hello carried (SNI, ALPN). Bad certificates (an unknown CA,
another host, expired) give a ``tls`` failure with its reason during load and one clear
message from the preflight before it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme

from wsload import taxonomy
from wsload.config.profile import OAuth2
from wsload.errors import ConfigError
from wsload.net.client import ClientOptions, ConnectError, Connection, connect
from wsload.net.oauth2 import OAuth2Client, check_token_endpoint
from wsload.net.raw_exchange import preflight
from wsload.net.tls import TlsResume, TlsSettings
from wsload.protocol.carrier import place
from wsload.protocol.upgrade import accept_for, parse_head
from wsload.run.summary import load_samples, render

REPO = Path(__file__).resolve().parents[2]
SUBJECT = "tls-user"


class Pki:
    """A throwaway CA, its certificates as PEM files, and a CA nobody trusts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = trustme.CA()
        self.ca_file = self.write("ca.pem", self.ca.cert_pem)
        self.server = self.leaf("server.pem", "localhost", "127.0.0.1")
        self.other_host = self.leaf("other-host.pem", "other.example")
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        self.expired = self.leaf(
            "expired.pem", "127.0.0.1", not_before=past - dt.timedelta(days=30), not_after=past
        )
        self.client = self.leaf("client.pem", "wsload-client.example")
        stranger = trustme.CA()
        self.unknown_ca = str(folder / "unknown-ca-server.pem")
        stranger.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            self.unknown_ca
        )

    def write(self, name: str, blob) -> str:
        path = self.folder / name
        blob.write_to_path(str(path))
        return str(path)

    def leaf(self, name: str, *identities: str, **kw) -> str:
        cert = self.ca.issue_cert(*identities, **kw)
        return self.write(name, cert.private_key_and_cert_chain_pem)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def options(**tls) -> ClientOptions:
    return ClientOptions(
        connect_timeout_s=3.0, handshake_timeout_s=3.0, ack_timeout_s=3.0, tls=TlsSettings(**tls)
    )


def open_as(url, profile, minter, opts, resume=None) -> Connection:
    placement = place(profile.auth, url, minter.mint(SUBJECT))
    return connect(
        url, profile, placement, expected_subject=SUBJECT, options=opts, tls_resume=resume
    )


def test_a_wss_session_with_a_private_ca_is_verified_timed_and_compressed(
    target_factory, pki, profile, minter
):
    target = target_factory("--tls-cert", pki.server)
    assert target.url.startswith("wss://")
    preflight(target.url, tls_settings=TlsSettings(ca_file=pki.ca_file))  # no error
    conn = open_as(target.url, profile, minter, options(ca_file=pki.ca_file))
    t = conn.timings
    assert conn.user_id == SUBJECT
    assert t.tls_ms > 0 and t.connect_ms >= t.tcp_ms + t.tls_ms
    assert t.tls_resumed is False
    assert conn.session.extensions.startswith("permessage-deflate")
    conn.close()


def test_a_reconnect_resumes_the_users_tls_session(target_factory, pki, profile, minter):
    target = target_factory("--tls-cert", pki.server)
    resume = TlsResume()
    opts = options(ca_file=pki.ca_file)
    first = open_as(target.url, profile, minter, opts, resume)
    first.close()
    second = open_as(target.url, profile, minter, opts, resume)
    assert (first.timings.tls_resumed, second.timings.tls_resumed) == (False, True)
    second.close()
    fresh = open_as(target.url, profile, minter, opts)  # another user: its own handshake
    assert fresh.timings.tls_resumed is False
    fresh.close()


def test_mtls_needs_the_client_certificate(target_factory, pki, profile, minter):
    target = target_factory("--tls-cert", pki.server, "--tls-client-ca", pki.ca_file)
    with pytest.raises(ConnectError) as info:
        open_as(target.url, profile, minter, options(ca_file=pki.ca_file))
    assert info.value.failure == taxonomy.TLS
    assert info.value.detail.startswith(taxonomy.TLS_CLIENT_CERT), info.value.detail
    conn = open_as(
        target.url, profile, minter, options(ca_file=pki.ca_file, client_cert=pki.client)
    )
    assert conn.user_id == SUBJECT
    conn.close()


def serve_tls_then_101(conn: socket.socket, cert: str, hellos: list[dict]) -> None:
    """An independent TLS server: record the hello's SNI and ALPN, answer 101 and the ack."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert)
    context.set_alpn_protocols(["h2", "http/1.1"])
    hello: dict = {}
    context.sni_callback = lambda _sock, name, _ctx: hello.update(sni=name)
    conn.settimeout(5)
    try:
        tls = context.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        return  # the client refused the certificate
    hello["alpn"] = tls.selected_alpn_protocol()
    hellos.append(hello)
    with contextlib.suppress(OSError):  # the client may drop the connection at any point
        answer_101(tls)


def answer_101(tls: ssl.SSLSocket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            return  # a preflight: it only shook hands
        data += chunk
    key = parse_head(data).header("sec-websocket-key") or ""
    ack = json.dumps({"type": "connection_established", "data": {"user_id": SUBJECT}}).encode()
    tls.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept_for(key)}\r\n".encode()
        + b"Sec-WebSocket-Protocol: jwt-auth\r\n\r\n"
        + bytes((0x81, len(ack)))
        + ack
    )
    tls.recv(4096)


@pytest.mark.parametrize(
    ("host", "sni"), [("localhost", "localhost"), ("127.0.0.1", None)], ids=["name", "ip"]
)
def test_sni_and_alpn_are_sent_as_chromium_sends_them(raw_server, pki, profile, minter, host, sni):
    hellos: list[dict] = []
    server = raw_server(lambda conn: serve_tls_then_101(conn, pki.server, hellos))
    url = f"wss://{host}:{server.port}/ws"
    conn = open_as(url, profile, minter, options(ca_file=pki.ca_file))
    conn.abort()
    # a name goes in SNI, an IP literal never does (RFC 6066); ALPN picks HTTP/1.1 even
    # from a server that prefers h2, because the client offers only http/1.1
    assert [(h.get("sni"), h["alpn"]) for h in hellos] == [(sni, "http/1.1")]


@pytest.mark.parametrize(
    ("cert", "host", "reason", "fix"),
    [
        ("unknown_ca", "127.0.0.1", taxonomy.TLS_UNKNOWN_CA, "--tls-ca"),
        ("other_host", "127.0.0.1", taxonomy.TLS_WRONG_HOST, "certificate lists"),
        ("expired", "127.0.0.1", taxonomy.TLS_EXPIRED, "renew"),
    ],
)
def test_a_bad_certificate_is_a_tls_failure_with_its_reason_and_stops_the_preflight(
    raw_server, pki, profile, minter, cert, host, reason, fix
):
    server = raw_server(lambda conn: serve_tls_then_101(conn, getattr(pki, cert), []))
    url = f"wss://{host}:{server.port}/ws"
    with pytest.raises(ConnectError) as info:
        open_as(url, profile, minter, options(ca_file=pki.ca_file))
    assert info.value.failure == taxonomy.TLS and info.value.phase == "connect"
    assert info.value.detail.startswith(f"{reason}: "), info.value.detail
    with pytest.raises(ConfigError) as stopped:
        preflight(url, tls_settings=TlsSettings(ca_file=pki.ca_file))
    message = str(stopped.value)
    assert reason in message and fix in message, message
    # --tls-insecure takes any certificate
    insecure = open_as(url, profile, minter, options(ca_file=pki.ca_file, insecure=True))
    assert insecure.user_id == SUBJECT
    insecure.abort()


def locust(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "ws_auth.py")]
        + ["--headless", "--only-summary", "--loglevel", "WARNING", *args],
        cwd=REPO,
        env={**env, "JWT_SECRET_KEY": "test-secret-0123456789-abcdefghijklmnop"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_a_locust_run_over_wss_records_the_tls_phase_the_extension_and_verifies_https(
    target_factory, pki, tmp_path
):
    target = target_factory("--tls-cert", pki.server)
    folder = tmp_path / "run"
    run = locust(
        *("-u", "3", "-r", "3", "-t", "4s", "--think-time", "0.2", "--probe-users", "0"),
        *("--host", target.url, "--tls-ca", pki.ca_file, "--results", str(folder)),
        *("--ws-carrier", "ticket"),  # an HTTPS request per session, checked with the same CA
    )
    assert run.returncode == 0, run.stderr[-3000:]
    samples = load_samples(folder)
    tls_rows = samples.loc[samples["name"] == "tls"]
    assert len(tls_rows) >= 3 and (tls_rows["ms"] > 0).all()
    connects = samples.loc[samples["name"] == "connect"]
    assert connects["detail"].str.startswith("permessage-deflate").all()
    assert (samples.loc[samples["name"] == "turn:e2e", "ok"]).all()
    tickets = samples.loc[samples["name"] == "http:ticket"]
    assert len(tickets) >= 3 and tickets["ok"].all()
    meta = json.loads((folder / "run.json").read_text())
    assert meta["tls_insecure"] is False and meta["compression"] == "browser"
    assert "NOT verified" not in render(folder)


@pytest.mark.slow
def test_tls_insecure_is_marked_in_run_json_and_the_summary(pki, tmp_path, raw_server):
    folder = tmp_path / "run"
    server = raw_server(lambda conn: serve_tls_then_101(conn, pki.unknown_ca, []))
    url = f"wss://127.0.0.1:{server.port}/ws"
    # before load: the unknown CA stops the run with one message
    refused = locust("-u", "1", "-t", "3s", "--host", url, "--results", str(tmp_path / "no"))
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "unknown CA" in refused.stderr and "--tls-ca" in refused.stderr
    assert "Traceback" not in refused.stderr
    # with --tls-insecure it runs, loudly
    run = locust(
        *("-u", "1", "-r", "1", "-t", "2s", "--probe-users", "0", "--tls-insecure"),
        *("--host", url, "--results", str(folder)),
    )
    assert run.returncode in (0, 1), run.stderr[-3000:]
    assert "NOT verified" in run.stderr
    assert json.loads((folder / "run.json").read_text())["tls_insecure"] is True
    assert "WARNING: --tls-insecure" in render(folder)


class TokenEndpoint(http.server.BaseHTTPRequestHandler):
    """An OAuth2 token endpoint that grants every request one opaque token."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"access_token": "opaque-token", "expires_in": 600}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def https_token_endpoint(cert: str):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/oauth/token"
    finally:
        server.shutdown()
        server.server_close()


def test_the_token_endpoint_check_before_load_trusts_the_runs_tls_ca(pki):
    with https_token_endpoint(pki.server) as url:
        client = OAuth2Client(url, OAuth2(grant="client_credentials"), "wsload", "s3cret")
        with pytest.raises(ConfigError) as refused:
            check_token_endpoint(client, timeout_s=5)  # the system's CAs only
        assert "certificate this run does not trust" in str(refused.value)
        assert "--tls-ca" in refused.value.fix
        answer = check_token_endpoint(client, timeout_s=5, tls=TlsSettings(ca_file=pki.ca_file))
        assert answer.access_token == "opaque-token"
