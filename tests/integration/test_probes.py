"""Negative probes against real servers: refused under enforce, caught when permissive, and
handshake conformance kept apart from auth."""

from __future__ import annotations

import jwt
import pytest

from wsload import taxonomy
from wsload.net.client import ClientOptions
from wsload.net.probes import (
    AUTH_PROBES,
    CONFORMANCE_PROBES,
    PROBES,
    ProbeTokens,
    malformed_key,
    run_probe,
    sample_kind,
    stats_name,
)

OPTS = ClientOptions(connect_timeout_s=2, handshake_timeout_s=2, ack_timeout_s=1)


@pytest.fixture(scope="module")
def tokens(minter):
    return ProbeTokens(minter)


def outcomes(target, profile, tokens) -> dict[str, object]:
    return {p: run_probe(p, profile, target.url, tokens, "probe-user", OPTS) for p in PROBES}


def test_every_probe_is_refused_by_an_enforcing_server_with_frame_and_1008(target, profile, tokens):
    results = outcomes(target, profile, tokens)
    for probe in AUTH_PROBES:
        r = results[probe]
        assert r.ok and r.outcome == "error_frame_close" and r.close_code == 1008, (probe, r)
    assert results["plain_http_get"].outcome == "http_426"
    assert results["bad_websocket_key"].outcome == "http_400"


def test_a_load_balancer_rejecting_at_the_upgrade_is_recorded_as_http_401(
    target_factory, profile, tokens
):
    results = outcomes(target_factory("--reject-at-upgrade", "401"), profile, tokens)
    assert {results[p].outcome for p in AUTH_PROBES} == {"http_401"}
    assert all(r.ok for r in results.values())


@pytest.mark.parametrize("mode", ["demo", "relaxed", "off"])
def test_permissive_servers_accept_every_token_probe(target_factory, profile, tokens, mode):
    results = outcomes(target_factory("--auth-mode", mode), profile, tokens)
    for probe in AUTH_PROBES:
        r = results[probe]
        assert not r.ok and r.failure == taxonomy.AUTH_NOT_ENFORCED and r.outcome == "accepted"
    assert all(results[p].ok for p in CONFORMANCE_PROBES)


def test_a_server_that_stays_silent_is_a_timeout_without_ack(target_factory, profile, tokens):
    r = run_probe(
        "no_token", profile, target_factory("--auth-mode", "off", "--no-ack").url, tokens, "p", OPTS
    )
    assert r.ok and r.outcome == "timeout_no_ack"


def test_each_crafted_token_has_exactly_its_defect(tokens, minter):
    def claims(probe):
        return jwt.decode(tokens.token(probe, "p"), options={"verify_signature": False})

    assert claims("expired")["exp"] < claims("not_yet_valid")["nbf"]
    assert "sub" not in claims("missing_sub") and "exp" not in claims("missing_exp")
    assert claims("refresh_as_access")["token_type"] == "refresh"
    assert claims("wrong_issuer")["iss"] != minter.spec.issuer
    assert claims("wrong_audience")["aud"] != minter.spec.audience
    assert jwt.get_unverified_header(tokens.token("alg_none", "p"))["alg"] == "none"
    assert claims("tampered_claims")["permissions"] == ["admin"]
    assert tokens.token("no_token", "p") is None
    import base64

    assert len(base64.b64decode(malformed_key())) == 36


def test_probes_skip_claims_the_profiles_tokens_never_carry():
    from wsload.config.profile import load_profile
    from wsload.net.probes import applicable_probes

    assert applicable_probes(load_profile()) == PROBES
    other = load_profile("tests/data/other_backend.toml")
    assert "refresh_as_access" not in applicable_probes(other)
    assert {"wrong_issuer", "missing_exp", "alg_none"} <= set(applicable_probes(other))


def test_auth_and_conformance_probes_have_their_own_names_and_kinds():
    assert stats_name("no_token") == "probe:no_token" and sample_kind("no_token") == "probe"
    assert stats_name("bad_websocket_key") == "conformance:bad_websocket_key"
    assert {sample_kind(p) for p in CONFORMANCE_PROBES} == {"conformance"}
    assert set(AUTH_PROBES).isdisjoint(CONFORMANCE_PROBES)


def test_a_lax_handshake_with_enforced_auth_is_a_conformance_finding_not_an_auth_bypass(
    fastapi_backend, profile, tokens
):
    """uvicorn with wsproto accepts a malformed Sec-WebSocket-Key but checks every token."""
    server = fastapi_backend("--ws", "wsproto")
    results = outcomes(server, profile, tokens)
    for probe in AUTH_PROBES:
        assert results[probe].ok, (probe, results[probe])
    lax = results["bad_websocket_key"]
    assert not lax.ok and lax.outcome == "accepted"
    assert lax.failure == taxonomy.HANDSHAKE_NOT_CONFORMANT
    assert results["plain_http_get"].ok  # 404 for a GET without Upgrade
