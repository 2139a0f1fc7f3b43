"""Tokens wsload does not mint: the token file, the OAuth2 token requests and answers, the
options that choose them, and the probes a run can still craft without a signing key."""

from __future__ import annotations

import argparse
import base64
import json
import time
from dataclasses import replace
from urllib.parse import parse_qs

import jwt
import pytest

from wsload.config.options import OPTION_SPECS, forget_run_configs, run_config
from wsload.config.profile import OAuth2, load_profile
from wsload.config.token_file import expiry_warning, load_token_file
from wsload.errors import ConfigError
from wsload.net.oauth2 import (
    OAuth2Client,
    TokenError,
    grant_request,
    parse_answer,
    refresh_request,
)
from wsload.net.probes import SIGNED_PROBES, ProbeTokens, applicable_probes

KEY = "idp-key-that-wsload-never-sees-0123456789"
NOW = 1_800_000_000.0
SECRET = "CLIENT-SECRET-do-not-leak"


def idp_token(sub: str | None = "alice", exp: float | None = NOW + 600, **claims) -> str:
    body = {"iss": "https://idp.test", **claims}
    if sub is not None:
        body["sub"] = sub
    if exp is not None:
        body["exp"] = int(exp)
    return jwt.encode(body, KEY, algorithm="HS256")


# the token file ------------------------------------------------------------------------------
def test_a_token_file_takes_plain_and_json_lines_and_reads_the_subject_from_the_token(tmp_path):
    path = tmp_path / "tokens.txt"
    lines = [
        "# pre-issued by the IdP",
        idp_token("alice"),
        f"{idp_token('bob')} , refresh-bob",
        "",
        json.dumps({"access_token": idp_token("carol"), "subject": "u-3", "refresh_token": "r3"}),
        json.dumps({"access_token": "opaque-token", "expires_at": NOW + 60}),
    ]
    path.write_text("\n".join(lines) + "\n")
    tokens = load_token_file(path, now=NOW)
    assert [(t.line, t.subject, t.refresh_token) for t in tokens] == [
        (2, "alice", None),
        (3, "bob", "refresh-bob"),
        (5, "u-3", "r3"),  # the file's own subject wins over the token's claim
        (6, None, None),  # opaque: no subject known, expiry from the line
    ]
    assert tokens[0].expires_at == NOW + 600 and tokens[3].expires_at == NOW + 60
    assert "eyJ" not in repr(tokens[0])  # a token never shows in a repr


def test_a_token_file_reads_another_claim_as_the_subject_when_the_profile_says(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text(idp_token("auth0|123", email="a@corp.test") + "\n")
    (token,) = load_token_file(path, subject_claim="email", now=NOW)
    assert token.subject == "a@corp.test"


def test_an_expired_token_in_the_file_is_refused_naming_its_line_not_its_text(tmp_path):
    path = tmp_path / "tokens.txt"
    expired = idp_token("bob", exp=NOW - 7200)
    path.write_text(f"{idp_token('alice')}\n{expired}\n")
    with pytest.raises(ConfigError) as err:
        load_token_file(path, now=NOW)
    text = str(err.value)
    assert "holds 1 expired access token of 2" in text and "line 2 expired 2.0 h ago" in text
    assert expired not in text and "issue fresh tokens" in err.value.fix


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "lists no tokens"),
        ("{not json\n", "line 1 is not valid JSON"),
        ("a,b,c\n", "3 comma-separated fields"),
        ('{"refresh_token": "r"}\n', "line 1 has no access token"),
    ],
)
def test_a_malformed_token_file_is_one_message_with_the_format(tmp_path, content, message):
    path = tmp_path / "tokens.txt"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        load_token_file(path, now=NOW)
    assert "ACCESS_TOKEN[,REFRESH_TOKEN]" in err.value.fix


def test_tokens_expiring_during_the_planned_run_are_one_warning(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text(f"{idp_token('a', exp=NOW + 300)}\n{idp_token('b', exp=NOW + 9000)}\n")
    tokens = load_token_file(path, now=NOW)
    warning = expiry_warning(tokens, 600, can_refresh=True, now=NOW)
    assert "1 of 2 tokens of the token file expire during the planned run of 600 s" in warning
    assert "line 1, in 5 min" in warning and "no refresh token" in warning
    assert expiry_warning(tokens, 60, can_refresh=True, now=NOW) is None
    assert expiry_warning(tokens, None, can_refresh=True, now=NOW) is None


# OAuth2 requests and answers -----------------------------------------------------------------
def client(**spec: object) -> OAuth2Client:
    return OAuth2Client("https://idp.test/oauth/token", OAuth2(**spec), "wsload", SECRET)


def test_the_password_grant_is_a_form_with_the_client_in_http_basic():
    request = grant_request(client(scope="chat", params={"audience": "api"}), "a@x.test", "pw")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.body) == {
        "grant_type": ["password"],
        "username": ["a@x.test"],
        "password": ["pw"],
        "scope": ["chat"],
        "audience": ["api"],
    }
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(encoded).decode() == f"wsload:{SECRET}"
    assert SECRET not in repr(request) and SECRET not in repr(client())


def test_client_credentials_in_a_json_body_and_the_refresh_grant():
    spec = {"grant": "client_credentials", "body": "json", "client_auth": "body"}
    request = grant_request(client(**spec))
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "grant_type": "client_credentials",
        "client_id": "wsload",
        "client_secret": SECRET,
    }
    assert "Authorization" not in request.headers
    refresh = json.loads(refresh_request(client(**spec), "r-1").body)
    assert refresh["grant_type"] == "refresh_token" and refresh["refresh_token"] == "r-1"


def test_an_answer_gives_tokens_and_expiry_by_dotted_path_or_from_the_exp_claim():
    spec = {"access_token_field": "data.jwt", "expires_in_field": "data.ttl"}
    body = json.dumps({"data": {"jwt": idp_token(), "ttl": 30}, "refresh_token": "r"})
    answer = parse_answer(client(**spec), 200, body, now=NOW)
    assert answer.expires_at == NOW + 30 and answer.refresh_token == "r"
    without_ttl = parse_answer(client(), 200, json.dumps({"access_token": idp_token()}), now=NOW)
    assert without_ttl.expires_at == NOW + 600 and without_ttl.refresh_token is None


def test_a_refusal_keeps_what_the_provider_said_and_an_answer_without_token_names_its_fields():
    said = json.dumps({"error": "invalid_client", "error_description": "client auth failed"})
    with pytest.raises(TokenError) as err:
        parse_answer(client(), 401, said)
    assert err.value.failure == "http_401"
    assert err.value.detail == "HTTP 401 (invalid_client: client auth failed)"
    with pytest.raises(TokenError, match=r"no 'access_token' \(fields: id_token, token\)"):
        parse_answer(client(), 200, json.dumps({"token": "x", "id_token": "y"}))


# options -------------------------------------------------------------------------------------
def namespace(**values: object) -> argparse.Namespace:
    ns = argparse.Namespace(**{spec.dest: spec.default for spec in OPTION_SPECS})
    for dest, value in values.items():
        assert hasattr(ns, dest), dest
        setattr(ns, dest, value)
    return ns


@pytest.fixture
def profile_file(tmp_path):
    def write(**oauth2: str) -> str:
        path = tmp_path / "idp.toml"
        path.write_text("[oauth2]\n" + "".join(f'{k} = "{v}"\n' for k, v in oauth2.items()))
        return str(path)

    yield write
    forget_run_configs()


@pytest.mark.parametrize(
    ("oauth2", "values", "message"),
    [
        ({}, {}, "needs the identity provider's token endpoint"),
        ({"endpoint": "https://idp.test/t"}, {}, "needs a client id"),
        (
            {"endpoint": "https://idp.test/t", "client_id": "c"},
            {},
            "--token-source oauth2 needs --credentials",
        ),
        (
            {"endpoint": "https://idp.test/t", "client_id": "c", "grant": "client_credentials"},
            {},
            "client_credentials grant needs the client secret",
        ),
    ],
)
def test_an_incomplete_oauth2_source_is_refused_before_load(profile_file, oauth2, values, message):
    ns = namespace(ws_profile=profile_file(**oauth2), token_source="oauth2", **values)
    with pytest.raises(ConfigError, match=message):
        run_config(ns)


def test_options_override_the_profiles_endpoint_and_client(profile_file):
    ns = namespace(
        ws_profile=profile_file(endpoint="https://idp.test/t", grant="client_credentials"),
        token_source="oauth2",
        oauth2_endpoint="https://staging-idp.test/token",
        oauth2_client_id="loadtest",
        oauth2_client_secret=SECRET,
    )
    oauth2 = run_config(ns).oauth2
    assert (oauth2.endpoint, oauth2.client_id, oauth2.client_secret) == (
        "https://staging-idp.test/token",
        "loadtest",
        SECRET,
    )


def test_a_bad_oauth2_grant_in_a_profile_names_the_key(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[oauth2]\ngrant = "implicit"\n')
    with pytest.raises(ConfigError, match=r"key 'oauth2\.grant': 'implicit' is not one of"):
        load_profile(path)


def test_the_file_source_needs_a_token_file(tmp_path):
    with pytest.raises(ConfigError, match="--token-source file needs --token-file"):
        run_config(namespace(token_source="file"))
    path = tmp_path / "t.txt"
    path.write_text(idp_token(exp=time.time() + 600) + "\n")
    options = run_config(namespace(token_source="file", token_file=str(path)))
    assert options.token_file[0].subject == "alice" and options.oauth2 is None


# probes without a signing key ----------------------------------------------------------------
def test_without_a_minter_only_probes_that_need_no_signing_key_run_from_a_real_token():
    profile = replace(load_profile(), token=replace(load_profile().token, algorithm="RS256"))
    sample = idp_token("alice", permissions=["read"])
    tokens = ProbeTokens(None, sample)
    probes = applicable_probes(profile, tokens)
    assert not SIGNED_PROBES & set(probes)
    assert {"no_token", "garbage_token", "bad_signature", "alg_none", "tampered_claims"} <= set(
        probes
    )
    header, payload, signature = sample.split(".")
    forged = tokens.token("bad_signature", "x").split(".")
    assert forged[:2] == [header, payload] and forged[2] != signature
    tampered = tokens.token("tampered_claims", "x")
    assert tampered.split(".")[2] == signature
    assert jwt.decode(tampered, options={"verify_signature": False})["sub"] == "alice-admin"
    assert jwt.get_unverified_header(tokens.token("alg_none", "x"))["alg"] == "none"
    assert tokens.valid("anyone") == sample
    opaque = applicable_probes(profile, ProbeTokens(None, "opaque-token"))
    assert "bad_signature" not in opaque and "header_dropped" in opaque
