"""The sans-I/O upgrade: request bytes, answer checks, token placement and its proof."""

from __future__ import annotations

import pytest

from wsload.config.profile import load_profile
from wsload.protocol.carrier import missing_from, place
from wsload.protocol.upgrade import (
    HandshakeError,
    accept_for,
    build_request,
    check_response,
    parse_head,
    parse_ws_url,
)

AUTH = load_profile().auth


def test_accept_matches_rfc_6455_example():
    assert accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_urls_are_split_with_default_ports_and_query():
    e = parse_ws_url("wss://example.test/ws?x=1")
    assert (e.secure, e.port, e.resource, e.host_header) == (True, 443, "/ws?x=1", "example.test")
    assert parse_ws_url("ws://[::1]:8080").host_header == "[::1]:8080"
    with pytest.raises(ValueError, match="not a ws"):
        parse_ws_url("http://x/")


def response(request, *, status="101 Switching Protocols", accept=None, extra=""):
    accept = accept_for(request.key) if accept is None else accept
    return (
        f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    ).encode()


def test_a_browser_like_request_with_subprotocols():
    request = build_request(
        parse_ws_url("ws://127.0.0.1:9/ws"),
        subprotocols=("jwt-auth", "jwt-auth.abc"),
        origin="http://localhost:3000",
        cookies=(("a", "b"),),
    )
    head = parse_head(request.to_bytes())
    assert head.start == ("GET", "/ws", "HTTP/1.1")
    assert head.header("sec-websocket-protocol") == "jwt-auth, jwt-auth.abc"
    assert head.header("origin") == "http://localhost:3000" and head.header("cookie") == "a=b"
    assert head.header("sec-websocket-version") == "13"


@pytest.mark.parametrize(
    ("kwargs", "failure", "text"),
    [
        ({"status": "403 Forbidden"}, "http_403", "403"),
        ({"accept": "bm9wZQ=="}, "invalid_http", "wrong Sec-WebSocket-Accept"),
        ({"extra": "Sec-WebSocket-Protocol: other\r\n"}, "invalid_http", "not offered"),
    ],
)
def test_bad_answers_get_their_taxonomy_id(kwargs, failure, text):
    request = build_request(parse_ws_url("ws://h/ws"), subprotocols=("jwt-auth",))
    with pytest.raises(HandshakeError) as info:
        check_response(response(request, **kwargs), request, ("jwt-auth",))
    assert info.value.failure == failure and text in info.value.detail


@pytest.mark.parametrize(
    "garbage",
    [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 101 OK\r\nbad line\r\n\r\n"],
)
def test_non_http_answers_are_invalid_http(garbage):
    request = build_request(parse_ws_url("ws://h/ws"))
    with pytest.raises(HandshakeError) as info:
        check_response(garbage, request, ())
    assert info.value.failure == "invalid_http"


def test_the_chosen_subprotocol_is_returned():
    request = build_request(parse_ws_url("ws://h/ws"), subprotocols=("jwt-auth", "jwt-auth.t"))
    extra = "Sec-WebSocket-Protocol: jwt-auth\r\n"
    answer = check_response(response(request, extra=extra), request, ("jwt-auth", "jwt-auth.t"))
    assert answer.subprotocol == "jwt-auth"


@pytest.mark.parametrize("carrier", ["subprotocol", "header", "query", "cookie"])
def test_each_carrier_puts_the_token_where_the_check_finds_it(carrier):
    placement = place(AUTH, "ws://h:1/ws", "tok.en.x", carrier=carrier)
    request = build_request(
        parse_ws_url(placement.url),
        subprotocols=placement.subprotocols,
        cookies=placement.cookies,
        extra_headers=placement.headers,
    )
    assert missing_from(placement, AUTH, request.to_bytes()) is None
    bare = build_request(parse_ws_url("ws://h:1/ws"))
    assert missing_from(placement, AUTH, bare.to_bytes()) is not None


def test_tickets_travel_in_the_query_and_base64url_tokens_lose_padding():
    placement = place(AUTH, "ws://h/ws", None, ticket="T1")
    assert placement.url == "ws://h/ws?ticket=T1" and placement.carrier == "ticket"
    import dataclasses

    b64 = dataclasses.replace(AUTH, subprotocol_token_encoding="base64url")
    entry = place(b64, "ws://h/ws", "a").subprotocols[1]
    assert entry == "jwt-auth.YQ"
