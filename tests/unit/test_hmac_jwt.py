"""HMAC tokens minted without PyJWT's per-token work are the tokens PyJWT would make."""

from __future__ import annotations

import datetime as dt
import warnings

import jwt
import pytest

from wsload.config.hmac_jwt import HmacSigner
from wsload.config.profile import load_profile
from wsload.config.tokens import TokenMinter

SECRET = "h" * 64
CLAIMS = {"sub": "u-1", "iat": 1700000000, "exp": 1700000300, "roles": ["a", "é"], "n": {"x": 1.5}}


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_signed_bytes_are_the_ones_pyjwt_gives(alg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = jwt.encode(CLAIMS, SECRET, algorithm=alg)
    assert HmacSigner(alg, SECRET).sign(CLAIMS) == expected
    assert jwt.decode(expected, SECRET, algorithms=[alg], options={"verify_exp": False}) == CLAIMS


def test_only_hmac_algorithms_take_the_fast_path():
    assert HmacSigner.supports("HS256") and not HmacSigner.supports("RS256")
    with pytest.raises(KeyError):
        HmacSigner("RS256", SECRET)


def test_a_minter_signs_hmac_tokens_a_server_accepts_and_tells_apart():
    minter = TokenMinter(load_profile().token, secret=SECRET, lifetime_s=60)
    first, second = minter.mint("u-7"), minter.mint("u-7")
    assert first != second  # each has its own jti
    claims = jwt.decode(first, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["sub"] == "u-7" and claims["exp"] - claims["iat"] == 60
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(first, "another" * 8, algorithms=["HS256"], options={"verify_aud": False})


def test_datetime_time_claims_still_become_numbers():
    minter = TokenMinter(load_profile().token, secret=SECRET)
    expiry = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    token = minter.mint("u-8", overrides={"exp": expiry})
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["exp"] == int(expiry.timestamp())
