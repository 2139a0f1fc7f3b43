"""Unit tests of the target's sans-I/O auth: carriers, subprotocol answer, JWT and tickets."""

from __future__ import annotations

import base64
import time

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from wsload.config.profile import load_profile
from wsload.config.tokens import TokenMinter
from wsload.target.auth import (
    Authenticator,
    AuthError,
    Credentials,
    Tickets,
    TokenValidator,
    bearer_token,
    decode_subprotocol_token,
    extract_credentials,
    negotiate,
    parse_subprotocols,
)

SECRET = "unit-test-secret-0123456789abcdef0123"
SPEC = load_profile().token
MINTER = TokenMinter(SPEC, secret=SECRET)


def validator() -> TokenValidator:
    return TokenValidator(
        SECRET, "HS256", issuer=SPEC.issuer, audience=SPEC.audience, token_type="access"
    )


def b64(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()


def headers(**items: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in items.items()})


# subprotocols ---------------------------------------------------------------------------
def test_parse_subprotocols_keeps_order_and_drops_blanks() -> None:
    assert parse_subprotocols(" jwt-auth , jwt-auth.abc,, x ") == ("jwt-auth", "jwt-auth.abc", "x")
    assert parse_subprotocols(None) == ()


def test_negotiate_echoes_first_bare_supported_name() -> None:
    answer = negotiate(["chat", "jwt-auth.tok", "bearer", "jwt-auth"])
    assert answer.selected == "bearer"
    assert not answer.unsupported


def test_negotiate_token_entry_without_bare_name_echoes_nothing_but_is_supported() -> None:
    answer = negotiate(["jwt-auth.tok"])
    assert answer.selected is None
    assert not answer.unsupported


def test_negotiate_only_unknown_names_is_unsupported() -> None:
    assert negotiate(["graphql-ws", "chat.v2"]).unsupported
    assert not negotiate([]).unsupported


def test_subprotocol_token_raw_and_base64url_are_both_decoded() -> None:
    token = MINTER.mint("alice")
    assert decode_subprotocol_token(token) == token
    assert decode_subprotocol_token(b64(token)) == token


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"))
def test_subprotocol_token_decoding_never_raises(value: str) -> None:
    assert isinstance(decode_subprotocol_token(value), str)


# carriers --------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["jwt.", "jwt-auth.", "bearer."])
def test_every_subprotocol_prefix_carries_a_token(prefix: str) -> None:
    creds = extract_credentials(headers(Sec_WebSocket_Protocol=f"jwt-auth, {prefix}T.O.K"), {}, {})
    assert creds == Credentials("subprotocol", "T.O.K")


def test_carrier_order_subprotocol_header_query_ticket_cookie() -> None:
    all_carriers = (
        headers(Sec_WebSocket_Protocol="jwt-auth.S.S.S", Authorization="Bearer H.H.H"),
        {"token": "Q.Q.Q", "ticket": "TICKET"},
        {"access_token": "C.C.C"},
    )
    assert extract_credentials(*all_carriers).carrier == "subprotocol"
    no_sub = (headers(Authorization="Bearer H.H.H"), *all_carriers[1:])
    assert extract_credentials(*no_sub) == Credentials("header", "H.H.H")
    assert extract_credentials(headers(), *all_carriers[1:]) == Credentials("query", "Q.Q.Q")
    ticket_only = extract_credentials(headers(), {"ticket": "TICKET"}, {"access_token": "C.C.C"})
    assert ticket_only.is_ticket and ticket_only.token == "TICKET"
    assert extract_credentials(headers(), {}, {"access_token": "C.C.C"}).carrier == "cookie"
    assert extract_credentials(headers(), {}, {}).token is None


def test_access_token_query_parameter_is_read() -> None:
    assert extract_credentials(headers(), {"access_token": "A.B.C"}, {}).token == "A.B.C"


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


def at_test_time(value: object) -> object:
    """``"now+600"`` as the epoch second 600 s from now; other values as they are."""
    if isinstance(value, str) and value.startswith("now"):
        return int(time.time()) + int(value[3:])
    return value


# JWT validation --------------------------------------------------------------------------
def test_valid_access_token_yields_its_claims() -> None:
    claims = validator().validate(MINTER.mint("alice"))
    assert claims["sub"] == "alice"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": "now-10"}, "token expired"),
        ({"aud": "someone-else"}, "invalid audience"),
        ({"iss": "evil-issuer"}, "invalid issuer"),
        ({"token_type": "refresh", "type": "refresh"}, "not an access token"),
        ({"jti": None}, "token lacks the 'jti' claim"),
        ({"iss": None}, "token lacks the 'iss' claim"),
        ({"nbf": "now+600"}, "token not yet valid"),
    ],
)
def test_invalid_claims_are_rejected_with_a_reason(overrides: dict, reason: str) -> None:
    overrides = {k: at_test_time(v) for k, v in overrides.items()}  # not at collection
    with pytest.raises(AuthError) as info:
        validator().validate(MINTER.mint("alice", overrides=overrides))
    assert info.value.reason == reason


def test_bad_signature_is_rejected() -> None:
    other = TokenMinter(SPEC, secret="another-secret-0123456789abcdef0123")
    with pytest.raises(AuthError, match="invalid signature"):
        validator().validate(other.mint("alice"))


def test_alg_none_is_rejected() -> None:
    claims = MINTER.claims("alice")
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(AuthError, match="algorithm not allowed"):
        validator().validate(unsigned)


def test_garbage_is_rejected_without_echoing_it() -> None:
    with pytest.raises(AuthError) as info:
        validator().validate("not-a-token-SECRETISH")
    assert "SECRETISH" not in info.value.reason


def test_refresh_token_validates_as_refresh_type() -> None:
    refresh = MINTER.mint("alice", overrides={"token_type": "refresh", "type": "refresh"})
    assert validator().validate(refresh, token_type="refresh")["sub"] == "alice"


def test_without_configured_audience_the_aud_claim_is_not_checked() -> None:
    v = TokenValidator(SECRET, "HS256", issuer=SPEC.issuer, audience="")
    assert v.validate(MINTER.mint("alice", overrides={"aud": "whatever"}))["sub"] == "alice"


# tickets ---------------------------------------------------------------------------------
def test_ticket_redeems_once_as_its_subject() -> None:
    tickets = Tickets(b"k" * 32, ttl_s=30)
    ticket = tickets.issue("alice", now=1000.0)
    assert tickets.redeem(ticket, now=1001.0) == "alice"
    with pytest.raises(AuthError, match="already used"):
        tickets.redeem(ticket, now=1002.0)


def test_ticket_is_redeemable_by_another_process_with_the_same_key() -> None:
    ticket = Tickets(b"k" * 32).issue("alice", now=1000.0)
    assert Tickets(b"k" * 32).redeem(ticket, now=1001.0) == "alice"


def test_ticket_expires_and_rejects_tampering_and_foreign_keys() -> None:
    tickets = Tickets(b"k" * 32, ttl_s=30)
    ticket = tickets.issue("alice", now=1000.0)
    with pytest.raises(AuthError, match="expired"):
        tickets.redeem(ticket, now=1031.0)
    _payload, _, mac = tickets.issue("alice", now=1000.0).partition(".")
    forged = Tickets(b"x" * 32).issue("mallory", now=1000.0).partition(".")[0]
    with pytest.raises(AuthError, match="invalid ticket"):
        tickets.redeem(f"{forged}.{mac}", now=1001.0)
    with pytest.raises(AuthError, match="invalid ticket"):
        Tickets(b"x" * 32).redeem(ticket, now=1001.0)
    with pytest.raises(AuthError, match="invalid ticket"):
        tickets.redeem("garbage", now=1001.0)


def test_ticket_peek_reads_subject_without_checks() -> None:
    assert Tickets(b"k" * 32).peek(Tickets(b"x" * 32).issue("bob")) == "bob"
    assert Tickets(b"k" * 32).peek("garbage") is None


def test_used_tickets_are_pruned_after_expiry() -> None:
    tickets = Tickets(b"k" * 32, ttl_s=1)
    for i in range(1100):
        tickets.redeem(tickets.issue(f"u{i}", now=float(i)), now=float(i))
    assert len(tickets._used) < 1100


# modes -----------------------------------------------------------------------------------
def authenticator(mode: str) -> Authenticator:
    return Authenticator(mode, validator(), Tickets(b"k" * 32))


def test_enforce_accepts_valid_and_rejects_missing_or_invalid() -> None:
    auth = authenticator("enforce")
    ok = auth.authenticate(Credentials("header", MINTER.mint("alice")))
    assert (ok.accepted, ok.user_id, ok.verified) == (True, "alice", True)
    missing = auth.authenticate(Credentials())
    assert (missing.accepted, missing.reason) == (False, "no token provided")
    assert not auth.authenticate(Credentials("query", "x.y.z")).accepted


def test_enforce_accepts_a_ticket_as_its_subject() -> None:
    auth = authenticator("enforce")
    ticket = auth.tickets.issue("carol")
    assert auth.authenticate(Credentials("ticket", ticket)).user_id == "carol"


def test_demo_mode_acks_everyone_as_the_demo_user() -> None:
    auth = authenticator("demo")
    assert auth.authenticate(Credentials()).user_id == "demo-user-001"
    assert auth.authenticate(Credentials("header", MINTER.mint("alice"))).user_id == (
        "demo-user-001"
    )


def test_relaxed_mode_keeps_valid_subjects_and_invents_relaxed_users() -> None:
    auth = authenticator("relaxed")
    assert auth.authenticate(Credentials("header", MINTER.mint("alice"))).user_id == "alice"
    first = auth.authenticate(Credentials("header", "bad.to.ken"))
    second = auth.authenticate(Credentials())
    assert first.accepted and not first.verified
    assert first.user_id == "relaxed_0001" and second.user_id == "relaxed_0002"


def test_off_mode_trusts_the_unverified_subject() -> None:
    auth = authenticator("off")
    forged = TokenMinter(SPEC, secret="wrong-secret-0123456789abcdef0123").mint("mallory")
    assert auth.authenticate(Credentials("header", forged)).user_id == "mallory"
    assert auth.authenticate(Credentials()).user_id == "anonymous"
    foreign_ticket = Tickets(b"x" * 32).issue("dave")
    assert auth.authenticate(Credentials("ticket", foreign_ticket)).user_id == "dave"


# session expiry and in-band refresh ------------------------------------------------------
def test_verified_sessions_carry_the_token_expiry_and_tickets_carry_their_tokens() -> None:
    auth = authenticator("enforce")
    exp = int(time.time()) + 100
    token = MINTER.mint("alice", overrides={"exp": exp})
    assert auth.authenticate(Credentials("header", token)).expires_at == exp
    ticket = auth.tickets.issue("alice", token_exp=exp)
    assert auth.authenticate(Credentials("ticket", ticket)).expires_at == exp
    assert auth.authenticate(Credentials("ticket", auth.tickets.issue("bob"))).expires_at is None
    assert authenticator("demo").authenticate(Credentials("header", token)).expires_at is None
    relaxed = authenticator("relaxed")
    assert relaxed.authenticate(Credentials("header", token)).expires_at == exp
    assert relaxed.authenticate(Credentials("header", "x.y.z")).expires_at is None


def test_refresh_in_enforce_needs_a_valid_token_of_the_same_subject() -> None:
    auth = authenticator("enforce")
    exp = int(time.time()) + 500
    assert auth.refresh("alice", MINTER.mint("alice", overrides={"exp": exp})) == (exp, None)
    assert auth.refresh("alice", MINTER.mint("bob"))[1] == (
        "token subject differs from the session's user"
    )
    assert auth.refresh("alice", "x.y.z") == (None, "malformed token")
    assert auth.refresh("alice", None) == (None, "no token provided")
    refresh_token = MINTER.mint("alice", overrides={"token_type": "refresh", "type": "refresh"})
    assert auth.refresh("alice", refresh_token)[1] == "not an access token"


@pytest.mark.parametrize("mode", ["demo", "off", "relaxed"])
def test_refresh_in_permissive_modes_accepts_anything(mode: str) -> None:
    auth = authenticator(mode)
    assert auth.refresh("someone", "x.y.z") == (None, None)
    assert auth.refresh("someone", MINTER.mint("other")) == (None, None)
