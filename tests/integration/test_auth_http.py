"""Tokens from the target's HTTP endpoints, then used on the WebSocket, as a frontend does."""

from __future__ import annotations

import pytest

from wsload.auth_http import AuthHttpError, fetch_ticket, login, refresh
from wsload.config.options import http_base
from wsload.config.tokens import load_credentials
from wsload.net.client import ClientOptions, connect
from wsload.protocol.carrier import place

FAST = ClientOptions(connect_timeout_s=2, handshake_timeout_s=2, ack_timeout_s=2)


def test_login_with_csv_credentials_gives_a_token_the_websocket_accepts(target, profile, tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("email,password\nann@example.test,wsload-demo\n")
    cred = load_credentials(path)[0]
    pair = login(http_base(target.url), profile.auth, cred.email, cred.password)
    assert pair.user_id == "ann@example.test" and pair.refresh_token and pair.elapsed_ms > 0
    assert "eyJ" not in repr(pair)
    session = connect(
        target.url,
        profile,
        place(profile.auth, target.url, pair.access_token),
        expected_subject="ann@example.test",
        options=FAST,
    )
    session.close()


def test_a_wrong_password_is_http_401(target, profile):
    with pytest.raises(AuthHttpError) as info:
        login(http_base(target.url), profile.auth, "ann@example.test", "wrong")
    assert (info.value.failure, info.value.status) == ("http_401", 401)
    assert "wrong" not in str(info.value)


def test_refresh_gives_a_new_pair_and_rejects_garbage(target, profile):
    base = http_base(target.url)
    pair = login(base, profile.auth, "bob@example.test", "wsload-demo")
    fresh = refresh(base, profile.auth, pair.refresh_token)
    assert fresh.access_token != pair.access_token
    with pytest.raises(AuthHttpError, match="http_401"):
        refresh(base, profile.auth, "not-a-token")


def test_a_ticket_authenticates_the_websocket(target, profile, minter):
    token = minter.mint("carol")
    ticket, elapsed = fetch_ticket(http_base(target.url), profile.auth, token)
    placement = place(profile.auth, target.url, None, ticket=ticket)
    assert token not in placement.url and elapsed > 0
    session = connect(target.url, profile, placement, expected_subject="carol", options=FAST)
    session.close()


def test_nothing_listening_is_refused(profile):
    with pytest.raises(AuthHttpError, match="refused"):
        login("http://127.0.0.1:9", profile.auth, "a@b.c", "pw", timeout=2)
