"""Minted tokens carry the profile's claims; bad key material stops at start."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsload.config.profile import load_profile
from wsload.config.tokens import (
    TokenMinter,
    load_credentials,
    node_tag,
    subject_for,
    unverified_subject,
)
from wsload.errors import ConfigError

SPEC = load_profile().token
SECRET = "s" * 40


def decode(token, key, alg="HS256"):
    return jwt.decode(
        token,
        key,
        algorithms=[alg],
        audience="netra-platform",
        issuer="netra-auth-service",
        options={"require": ["exp", "iat", "sub", "iss", "jti"]},
    )


def test_hs256_tokens_carry_every_claim_the_backend_requires():
    minter = TokenMinter(SPEC, secret=SECRET, lifetime_s=300)
    claims = decode(minter.mint("u-1"), SECRET)
    assert claims["sub"] == "u-1" and claims["exp"] - claims["iat"] == 300
    assert claims["token_type"] == claims["type"] == "access"
    assert claims["email"] == "u-1@wsload.test" and claims["permissions"] == ["read", "write"]


def test_every_token_has_its_own_jti():
    minter = TokenMinter(SPEC, secret=SECRET)
    jtis = {decode(minter.mint("u"), SECRET)["jti"] for _ in range(200)}
    assert len(jtis) == 200


def test_the_secret_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    assert decode(TokenMinter(SPEC).mint("u"), SECRET)["sub"] == "u"


def test_a_missing_secret_stops_with_one_clear_message(monkeypatch):
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"(?s)no JWT secret.*--jwt-secret or set JWT_SECRET_KEY"):
        TokenMinter(SPEC)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_asymmetric_tokens_are_signed_with_a_key_file_loaded_once(tmp_path, alg):
    key = (
        rsa.generate_private_key(65537, 2048)
        if alg == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    import dataclasses

    minter = TokenMinter(dataclasses.replace(SPEC, algorithm=alg), key_file=str(path))
    assert decode(minter.mint("u"), key.public_key(), alg)["sub"] == "u"


def test_an_unreadable_or_bad_key_file_stops_with_the_path(tmp_path):
    import dataclasses

    spec = dataclasses.replace(SPEC, algorithm="RS256")
    with pytest.raises(ConfigError, match=r"cannot read the JWT private key file .*absent\.pem"):
        TokenMinter(spec, key_file=str(tmp_path / "absent.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(ConfigError, match="no usable unencrypted PEM private key"):
        TokenMinter(spec, key_file=str(junk))
    with pytest.raises(ConfigError, match="no private key"):
        TokenMinter(spec)


def test_overrides_replace_or_drop_claims():
    minter = TokenMinter(SPEC, secret=SECRET)
    claims = jwt.decode(
        minter.mint("u", overrides={"token_type": "refresh", "exp": None}),
        options={"verify_signature": False},
    )
    assert claims["token_type"] == "refresh" and "exp" not in claims


def test_subjects_are_unique_across_nodes():
    subjects = {subject_for("wsload", node, i) for node in ("w0", "w1") for i in range(1, 100)}
    assert len(subjects) == 198
    assert node_tag(3) == "w3" and node_tag(None) != node_tag(3)
    assert unverified_subject(TokenMinter(SPEC, secret=SECRET).mint("x")) == "x"
    assert unverified_subject("garbage") is None


def test_credentials_come_from_a_csv_with_a_header(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("email,password\na@x.test,pw1\nb@x.test,pw2\n")
    creds = load_credentials(path)
    assert [c.email for c in creds] == ["a@x.test", "b@x.test"] and "pw1" not in repr(creds)
    path.write_text("name,secret\na,b\n")
    with pytest.raises(ConfigError, match="no 'email' and 'password' columns"):
        load_credentials(path)
    path.write_text("email,password\na@x.test,\n")
    with pytest.raises(ConfigError, match="line 2 lacks"):
        load_credentials(path)
