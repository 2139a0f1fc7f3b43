"""The target's HTTP token endpoints, called as a frontend calls them (plain HTTP, JSON), and
their tokens then used on the WebSocket."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from wsload.config.options import http_base
from wsload.config.tokens import load_credentials
from wsload.net.client import ClientOptions, connect
from wsload.protocol.carrier import place

FAST = ClientOptions(connect_timeout_s=2, handshake_timeout_s=2, ack_timeout_s=2)


def post(url: str, body: dict, bearer: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def test_login_with_csv_credentials_gives_a_token_the_websocket_accepts(target, profile, tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("email,password\nann@example.test,wsload-demo\n")
    cred = load_credentials(path)[0]
    status, pair = post(
        http_base(target.url) + profile.auth.login_path,
        {"email": cred.email, "password": cred.password},
    )
    assert status == 200 and pair["refresh_token"]
    session = connect(
        target.url,
        profile,
        place(profile.auth, target.url, pair["access_token"]),
        expected_subject="ann@example.test",
        options=FAST,
    )
    session.close()


def test_a_wrong_password_is_http_401(target, profile):
    url = http_base(target.url) + profile.auth.login_path
    assert post(url, {"email": "ann@example.test", "password": "wrong"})[0] == 401


def test_refresh_gives_a_new_pair_and_rejects_garbage(target, profile):
    base = http_base(target.url)
    _, pair = post(
        base + profile.auth.login_path, {"email": "bob@x.test", "password": "wsload-demo"}
    )
    status, fresh = post(base + profile.auth.refresh_path, {"refresh_token": pair["refresh_token"]})
    assert status == 200 and fresh["access_token"] != pair["access_token"]
    assert post(base + profile.auth.refresh_path, {"refresh_token": "not-a-token"})[0] == 401


def test_a_ticket_authenticates_the_websocket(target, profile, minter):
    token = minter.mint("carol")
    status, answer = post(http_base(target.url) + profile.auth.ticket_path, {}, bearer=token)
    assert status == 200
    placement = place(profile.auth, target.url, None, ticket=answer[profile.auth.ticket_field])
    assert token not in placement.url
    session = connect(target.url, profile, placement, expected_subject="carol", options=FAST)
    session.close()


@pytest.mark.parametrize("bearer", [None, "not-a-jwt"])
def test_a_ticket_needs_a_valid_token(target, profile, bearer):
    url = http_base(target.url) + profile.auth.ticket_path
    assert post(url, {}, bearer=bearer)[0] == 401
