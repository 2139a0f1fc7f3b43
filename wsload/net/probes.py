"""Negative probes: credentials a server must refuse, and upgrades it must refuse.

A load test against a server that quietly accepts anyone "passes". Each auth probe opens a
fresh connection that differs from a good session only in its credentials (no token,
expired, signed with another key, ``alg: none``, ...) and reports the outcome: refused, and
HOW (HTTP status at the upgrade, error frame and policy close, close without frame, silence
without an ack), or accepted, which is ``auth_not_enforced``.

Handshake-conformance probes (a plain GET, a malformed ``Sec-WebSocket-Key``) are another
category: a server that accepts them is lax about RFC 6455, not open to everyone, so they
are ``conformance:<name>`` samples failing with ``handshake_not_conformant``, gateable on
their own and kept out of the security gate's auth check.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsload import taxonomy
from wsload.config.profile import Profile
from wsload.config.token_file import unverified_claims
from wsload.config.tokens import TokenMinter
from wsload.net.client import ClientOptions, ConnectError, connect
from wsload.net.raw_exchange import exchange_head
from wsload.protocol.carrier import Placement, place
from wsload.protocol.upgrade import build_request, parse_ws_url

AUTH_PROBES = (
    "no_token",
    "garbage_token",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "alg_none",
    "wrong_issuer",
    "wrong_audience",
    "missing_sub",
    "missing_exp",
    "refresh_as_access",
    "tampered_claims",
    "header_dropped",
)
CONFORMANCE_PROBES = ("plain_http_get", "bad_websocket_key")
PROBES = AUTH_PROBES + CONFORMANCE_PROBES
AUTH_PREFIX = "probe:"
CONFORMANCE_PREFIX = "conformance:"


def stats_name(probe: str) -> str:
    """``probe:<name>`` for an auth probe, ``conformance:<name>`` for a handshake probe."""
    return (CONFORMANCE_PREFIX if probe in CONFORMANCE_PROBES else AUTH_PREFIX) + probe


def sample_kind(probe: str) -> str:
    """The raw rows' ``kind`` of a probe's sample: ``probe`` or ``conformance``."""
    return "conformance" if probe in CONFORMANCE_PROBES else "probe"


# Probes that need a token signed with the backend's own key: wsload can craft them only
# when it can mint (a token file or an identity provider signs with a key wsload lacks).
SIGNED_PROBES = frozenset(
    {
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "missing_sub",
        "missing_exp",
        "refresh_as_access",
    }
)
# Probes crafted from a real token's claims: without a minter, the sample must be a JWT.
CLAIM_PROBES = frozenset({"bad_signature", "alg_none", "tampered_claims"})


def applicable_probes(profile: Profile, tokens: ProbeTokens | None = None) -> tuple[str, ...]:
    """The probes that mean something for this profile's tokens.

    A claim the backend's tokens never carry (no issuer, audience or token type) cannot be
    checked by it, so probing with a wrong one would only report a non-finding. Without a
    minter (``tokens.minter`` None) the probes that need the backend's signing key are
    skipped, and those made from a real token's claims too when that token is not a JWT.
    """
    claims = profile.token.claims
    skip = set()
    if tokens is not None and tokens.minter is None:
        skip |= SIGNED_PROBES
        if tokens.sample_claims is None:
            skip |= CLAIM_PROBES
    if not profile.token.issuer:
        skip.add("wrong_issuer")
    if not profile.token.audience:
        skip.add("wrong_audience")
    if "token_type" not in claims and "type" not in claims:
        skip.add("refresh_as_access")
    return tuple(p for p in PROBES if p not in skip)


# Outcomes: how the server refused (ok), or that it accepted (auth_not_enforced).
ACCEPTED = "accepted"
ERROR_FRAME_CLOSE = "error_frame_close"
CLOSE_NO_FRAME = "close_no_frame"
TIMEOUT_NO_ACK = "timeout_no_ack"


@dataclass(frozen=True)
class ProbeResult:
    probe: str
    ok: bool  # the server refused, as it must
    outcome: str  # http_<status> | error_frame_close | close_no_frame | timeout_no_ack | accepted
    # auth_not_enforced / handshake_not_conformant, or the id of a probe that could not conclude
    failure: str | None
    elapsed_ms: float
    detail: str
    http_status: int | None = None
    close_code: int | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class ProbeTokens:
    """Crafts each defective credential from the run's own minter (same claims otherwise),
    or, when wsload cannot mint, from ``sample``, a real token of the run's token source."""

    def __init__(self, minter: TokenMinter | None, sample: str | None = None) -> None:
        self.minter = minter
        self.sample = sample
        self.sample_claims = unverified_claims(sample) if sample else None
        alg = minter.algorithm if minter is not None else _sample_alg(sample)
        if alg.startswith("HS"):
            self._other_key: Any = secrets.token_urlsafe(48)
        elif alg.startswith("RS"):
            self._other_key = rsa.generate_private_key(65537, 2048)
        else:
            curve = ec.SECP384R1() if alg == "ES384" else ec.SECP256R1()
            self._other_key = ec.generate_private_key(curve)

    def valid(self, subject: str) -> str:
        """A token the server should accept (sent where it must not count)."""
        if self.minter is not None:
            return self.minter.mint(subject)
        return self.sample or ""

    def token(self, probe: str, subject: str) -> str | None:
        """The credential ``probe`` sends (None: none at all)."""
        m = self.minter
        now = int(time.time())
        if probe == "no_token":
            return None
        if probe == "garbage_token":
            return "not-a-jwt." + secrets.token_urlsafe(24)
        if m is None:
            return self._from_sample(probe)
        if probe == "expired":
            return m.mint(subject, now=now - 7200, lifetime_s=60)
        if probe == "not_yet_valid":
            return m.mint(subject, overrides={"nbf": now + 3600})
        if probe == "bad_signature":
            return jwt.encode(m.claims(subject), self._other_key, algorithm=m.algorithm)
        if probe == "alg_none":
            header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            return f"{header}.{_b64(json.dumps(m.claims(subject)).encode())}."
        if probe == "wrong_issuer":
            return m.mint(subject, overrides={"iss": "wsload-rogue-issuer"})
        if probe == "wrong_audience":
            return m.mint(subject, overrides={"aud": "wsload-other-audience"})
        if probe == "missing_sub":
            return m.mint(subject, overrides={m.spec.subject_claim: None})
        if probe == "missing_exp":
            return m.mint(subject, overrides={"exp": None})
        if probe == "refresh_as_access":
            return m.mint(subject, overrides={"token_type": "refresh", "type": "refresh"})
        if probe == "tampered_claims":
            header, _, signature = m.mint(subject).split(".")
            claims = m.claims(subject + "-admin")
            claims["permissions"] = ["admin"]
            return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
        raise ValueError(f"no token for probe {probe!r}")

    def _from_sample(self, probe: str) -> str:
        """A defective credential made from a real token, for a backend wsload cannot sign
        for: its header and claims, with the signature or the claims broken."""
        header, payload, signature = (self.sample or "..").split(".")[:3]
        if probe == "bad_signature":
            forged = secrets.token_bytes(max(32, len(signature) * 3 // 4))
            return f"{header}.{payload}.{_b64(forged)}"
        if probe == "alg_none":
            none = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            return f"{none}.{payload}."
        if probe == "tampered_claims":
            claims = dict(self.sample_claims or {})
            claims["sub"] = f"{claims.get('sub', '')}-admin"
            claims["permissions"] = ["admin"]
            return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
        raise ValueError(f"probe {probe!r} needs the backend's signing key")


def _sample_alg(sample: str | None) -> str:
    try:
        alg = jwt.get_unverified_header(sample or "").get("alg")
    except jwt.PyJWTError:
        return "HS256"
    return alg if isinstance(alg, str) and alg[:2] in ("HS", "RS", "ES") else "HS256"


def placement_for(
    probe: str, profile: Profile, url: str, tokens: ProbeTokens, subject: str
) -> Placement:
    """Where the probe's credential goes: the profile's carrier, or a wrong header name."""
    if probe == "header_dropped":
        # What a client library that silently drops the auth header leaves on the wire:
        # the token under a name the server does not read, and nowhere else.
        valid = tokens.valid(subject)
        return Placement(url, headers=(("X-Dropped-Authorization", f"Bearer {valid}"),))
    token = tokens.token(probe, subject)
    carrier = "subprotocol" if profile.auth.carrier == "ticket" else profile.auth.carrier
    placement = place(profile.auth, url, token, carrier=carrier)
    return Placement(
        placement.url,
        placement.subprotocols,
        placement.headers,
        placement.cookies,
        token=placement.token,
    )


def run_probe(
    probe: str,
    profile: Profile,
    url: str,
    tokens: ProbeTokens,
    subject: str,
    options: ClientOptions,
) -> ProbeResult:
    """Run one probe over a fresh connection and say how the server answered."""
    if probe in CONFORMANCE_PROBES:
        return _run_http_probe(probe, profile, url, tokens, subject, options)
    placement = placement_for(probe, profile, url, tokens, subject)
    started = time.perf_counter()
    try:
        session = connect(url, profile, placement, options=options)
    except ConnectError as err:
        elapsed = (time.perf_counter() - started) * 1000.0
        if err.session is not None:
            err.session.abort()
        return _refusal(probe, err, elapsed)
    elapsed = (time.perf_counter() - started) * 1000.0
    who = session.user_id
    session.abort()
    return ProbeResult(
        probe,
        False,
        ACCEPTED,
        taxonomy.AUTH_NOT_ENFORCED,
        elapsed,
        f"acked as user {who!r}" if who is not None else "accepted (101 and no rejection)",
        http_status=101,
    )


def _refusal(probe: str, err: ConnectError, elapsed: float) -> ProbeResult:
    if err.failure.startswith("http_") and err.http_status is not None:
        return ProbeResult(
            probe, True, err.failure, None, elapsed, err.detail, http_status=err.http_status
        )
    if err.failure == taxonomy.AUTH_REJECTED:
        outcome = ERROR_FRAME_CLOSE if err.error_code else CLOSE_NO_FRAME
        return ProbeResult(
            probe,
            True,
            outcome,
            None,
            elapsed,
            err.detail,
            http_status=101,
            close_code=err.close_code,
        )
    if err.failure.startswith("closed_"):
        return ProbeResult(
            probe,
            True,
            CLOSE_NO_FRAME,
            None,
            elapsed,
            err.detail,
            http_status=101,
            close_code=err.close_code,
        )
    if err.failure == taxonomy.AUTH_TIMEOUT:
        return ProbeResult(probe, True, TIMEOUT_NO_ACK, None, elapsed, err.detail, http_status=101)
    # The probe never reached the point where the server could judge it.
    return ProbeResult(
        probe, False, err.failure, err.failure, elapsed, err.detail, http_status=err.http_status
    )


def malformed_key() -> str:
    """A ``Sec-WebSocket-Key`` clients get wrong: base64 of a 36-character UUID, not 16 bytes."""
    return base64.b64encode(str(uuid.uuid4()).encode()).decode()


def _run_http_probe(
    probe: str,
    profile: Profile,
    url: str,
    tokens: ProbeTokens,
    subject: str,
    options: ClientOptions,
) -> ProbeResult:
    if profile.transport.framing == "socketio":  # the WebSocket endpoint is Engine.IO's
        from wsload.net.engineio import engineio_url

        url = engineio_url(url, "websocket")
    endpoint = parse_ws_url(url)
    if probe == "plain_http_get":
        request = (
            f"GET {endpoint.resource} HTTP/1.1\r\nHost: {endpoint.host_header}\r\n"
            "Accept: text/html\r\nConnection: close\r\n\r\n"
        ).encode()
        refused = {400, 426}
    else:
        placement = place(profile.auth, url, tokens.valid(subject), carrier="subprotocol")
        request = build_request(
            endpoint, subprotocols=placement.subprotocols, key=malformed_key()
        ).to_bytes()
        refused = {400}
    started = time.perf_counter()
    try:
        status, _ = exchange_head(url, request, options.handshake_timeout_s, options.tls_settings)
    except ConnectError as err:
        return ProbeResult(probe, False, err.failure, err.failure, err_ms(started), err.detail)
    elapsed = err_ms(started)
    if status in refused:
        return ProbeResult(
            probe, True, f"http_{status}", None, elapsed, f"HTTP {status}", http_status=status
        )
    if 400 <= status < 500 and probe == "plain_http_get":
        # Refused, though not with the status RFC 6455 servers give (400/426).
        return ProbeResult(
            probe, True, f"http_{status}", None, elapsed, f"HTTP {status}", http_status=status
        )
    return ProbeResult(
        probe,
        False,
        ACCEPTED,
        taxonomy.HANDSHAKE_NOT_CONFORMANT,
        elapsed,
        f"HTTP {status} where {'/'.join(map(str, sorted(refused)))} was due",
        http_status=status,
    )


def err_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
