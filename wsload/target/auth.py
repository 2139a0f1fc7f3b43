"""Sans-I/O authentication of the target: where the token is, whether it is valid, who it is.

Nothing here touches a socket or a file: the server hands in header, query and cookie
mappings and gets back credentials, a subprotocol answer and an ``AuthOutcome``. That keeps
every carrier and every rejection reason unit-testable without a server. Error reasons are
meant for the client's error frame: they never contain the token itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from wsload.target.config import DEMO_USER

SUBPROTOCOL_NAMES = ("jwt-auth", "jwt", "bearer")
TOKEN_PREFIXES = ("jwt.", "jwt-auth.", "bearer.")
QUERY_TOKEN_PARAMS = ("token", "access_token")
TICKET_PARAM = "ticket"
COOKIE_NAME = "access_token"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "jti")

CARRIER_SUBPROTOCOL = "subprotocol"
CARRIER_HEADER = "header"
CARRIER_QUERY = "query"
CARRIER_TICKET = "ticket"
CARRIER_COOKIE = "cookie"


class AuthError(Exception):
    """A rejected token or ticket; ``reason`` is safe to show to the client."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# subprotocols ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Negotiation:
    """The subprotocol answer: ``selected`` is echoed; ``unsupported`` means close 1003."""

    offered: tuple[str, ...]
    selected: str | None
    unsupported: bool


def parse_subprotocols(header: str | None) -> tuple[str, ...]:
    """The entries of a ``Sec-WebSocket-Protocol`` header, in the client's order."""
    if not header:
        return ()
    return tuple(p for p in (part.strip() for part in header.split(",")) if p)


def negotiate(offered: Iterable[str]) -> Negotiation:
    """Pick the first bare supported name offered; flag offers with nothing usable at all."""
    offered = tuple(offered)
    selected = next((p for p in offered if p in SUBPROTOCOL_NAMES), None)
    usable = selected is not None or any(p.startswith(TOKEN_PREFIXES) for p in offered)
    return Negotiation(offered, selected, unsupported=bool(offered) and not usable)


def decode_subprotocol_token(value: str) -> str:
    """A token from a subprotocol entry: raw JWT (has dots) or unpadded base64url of one."""
    if "." in value:
        return value
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        return value
    return decoded if decoded.count(".") == 2 else value


# carriers --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client presented: a JWT, a ticket (``carrier == "ticket"``), or nothing."""

    carrier: str | None = None
    token: str | None = None

    @property
    def is_ticket(self) -> bool:
        return self.carrier == CARRIER_TICKET


NO_CREDENTIALS = Credentials()


def extract_credentials(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    cookies: Mapping[str, str],
    offered: Iterable[str] | None = None,
) -> Credentials:
    """The first credential found, in the order browsers and backends use them.

    Subprotocol entries, then ``Authorization: Bearer``, then ``?token=``/``?access_token=``,
    then ``?ticket=``, then the ``access_token`` cookie. ``headers`` must be case-insensitive
    (aiohttp's are); ``offered`` saves re-parsing the subprotocol header.
    """
    if offered is None:
        offered = parse_subprotocols(headers.get("Sec-WebSocket-Protocol"))
    for entry in offered:
        for prefix in TOKEN_PREFIXES:
            if entry.startswith(prefix) and len(entry) > len(prefix):
                token = decode_subprotocol_token(entry[len(prefix) :])
                return Credentials(CARRIER_SUBPROTOCOL, token)
    token = bearer_token(headers.get("Authorization"))
    if token:
        return Credentials(CARRIER_HEADER, token)
    for name in QUERY_TOKEN_PARAMS:
        if query.get(name):
            return Credentials(CARRIER_QUERY, query[name])
    if query.get(TICKET_PARAM):
        return Credentials(CARRIER_TICKET, query[TICKET_PARAM])
    if cookies.get(COOKIE_NAME):
        return Credentials(CARRIER_COOKIE, cookies[COOKIE_NAME])
    return NO_CREDENTIALS


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (scheme case-insensitive)."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# JWT -------------------------------------------------------------------------------------
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "invalid audience"),
    (jwt.InvalidIssuerError, "invalid issuer"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.InvalidSignatureError, "invalid signature"),
    (jwt.DecodeError, "malformed token"),
)


class _OnceCheckedHMAC(HMACAlgorithm):
    """HMAC whose key checks (not PEM, SSH, DER or JWK) run once per key, not per token.

    PyJWT re-checks the secret on every decode; that is a third of a validation's cost,
    and the target's secret never changes.
    """

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._checked: tuple[object, bytes] | None = None

    def prepare_key(self, key: str | bytes) -> bytes:
        checked = self._checked
        if checked is not None and checked[0] is key:
            return checked[1]
        prepared = super().prepare_key(key)
        self._checked = (key, prepared)
        return prepared


_HMAC_HASHES = {
    "HS256": HMACAlgorithm.SHA256,
    "HS384": HMACAlgorithm.SHA384,
    "HS512": HMACAlgorithm.SHA512,
}


def _decoder(algorithm: str) -> jwt.PyJWT:
    """A private ``PyJWT`` (same checks as ``jwt.decode``) with the HMAC key checked once."""
    decoder = jwt.PyJWT()
    if algorithm in _HMAC_HASHES:
        try:
            jws = decoder._jws
            jws.unregister_algorithm(algorithm)
            jws.register_algorithm(algorithm, _OnceCheckedHMAC(_HMAC_HASHES[algorithm]))
        except (AttributeError, KeyError, ValueError, TypeError):
            return jwt.PyJWT()  # another PyJWT layout: still correct, only slower
    return decoder


class TokenValidator:
    """Validates JWTs with one key object and one algorithm, the way the backend does."""

    def __init__(
        self,
        key: Any,
        algorithm: str,
        *,
        issuer: str = "",
        audience: str = "",
        token_type: str = "access",
        leeway: float = 0.0,
    ) -> None:
        self._key = key
        self._decoder = _decoder(algorithm)
        self._algorithms = [algorithm]
        self._issuer = issuer or None
        self._audience = audience or None
        self._token_type = token_type
        self._leeway = leeway
        require = [c for c in REQUIRED_CLAIMS if c != "iss" or issuer]
        self._options: dict[str, Any] = {"require": require, "verify_aud": bool(audience)}

    def validate(self, token: str, *, token_type: str | None = None) -> dict[str, Any]:
        """The claims of a valid token of ``token_type`` (default: access); else ``AuthError``."""
        try:
            claims = self._decoder.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,  # type: ignore[arg-type]
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the '{exc.claim}' claim") from None
        except jwt.PyJWTError as exc:
            raise AuthError(_reason(exc)) from None
        wanted = token_type or self._token_type
        if wanted and claims.get("token_type", claims.get("type")) != wanted:
            article = "an" if wanted[0] in "aeiou" else "a"
            raise AuthError(f"not {article} {wanted} token")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise AuthError("token has an empty subject")
        return claims


def _reason(exc: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "invalid token"


# tickets ---------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tickets:
    """Short-lived, subject-bound WebSocket tickets that need no shared store.

    A ticket is ``payload.mac`` signed with a key all workers share, so any worker can
    redeem it; single use is enforced per process (a ticket replayed on another worker
    within its short lifetime gets through, which the real backend's store would stop).
    A ticket also carries the expiry of the access token it was issued for (``tex``), so a
    session opened with a ticket expires with that token, not with the ticket.
    """

    def __init__(self, key: bytes, ttl_s: float = 30.0) -> None:
        if not key:
            raise ValueError("tickets need a key")
        self._key = key
        self.ttl_s = ttl_s
        self._used: dict[str, float] = {}
        self._prune_at = 1024

    def issue(
        self, subject: str, *, now: float | None = None, token_exp: float | None = None
    ) -> str:
        """A fresh ticket for ``subject`` valid ``ttl_s`` seconds from ``now``.

        ``token_exp`` is the expiry of the access token the ticket stands for.
        """
        issued = time.time() if now is None else now
        body: dict[str, Any] = {
            "sub": subject,
            "exp": round(issued + self.ttl_s, 3),
            "jti": uuid.uuid4().hex,
        }
        if token_exp is not None:
            body["tex"] = token_exp
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def peek(self, ticket: str) -> str | None:
        """The subject of a ticket without checking anything (for ``--auth-mode off``)."""
        try:
            sub = json.loads(_unb64(ticket.partition(".")[0])).get("sub")
        except (ValueError, AttributeError, binascii.Error):
            return None
        return sub if isinstance(sub, str) and sub else None

    def redeem(self, ticket: str, *, now: float | None = None) -> str:
        """The subject of a valid, unexpired, unused ticket; marks it used; else ``AuthError``."""
        return self.redeem_claims(ticket, now=now)[0]

    def redeem_claims(self, ticket: str, *, now: float | None = None) -> tuple[str, float | None]:
        """Like ``redeem``: the subject and the expiry of the token the ticket stands for."""
        now = time.time() if now is None else now
        payload, _, mac = ticket.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(payload)):
            raise AuthError("invalid ticket")
        try:
            body = json.loads(_unb64(payload))
            sub, exp, jti = body["sub"], float(body["exp"]), str(body["jti"])
            tex = body.get("tex")
            token_exp = None if tex is None else float(tex)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise AuthError("invalid ticket") from None
        if exp <= now:
            raise AuthError("ticket expired")
        if jti in self._used:
            raise AuthError("ticket already used")
        self._used[jti] = exp
        if len(self._used) >= self._prune_at:
            self._used = {j: e for j, e in self._used.items() if e > now}
            self._prune_at = max(1024, 2 * len(self._used))
        return sub, token_exp

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()[:18])


# the decision ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """Accepted as ``user_id``, or rejected for ``reason``; ``verified`` when really checked.

    ``expires_at`` is the verified token's ``exp`` (epoch seconds), None when nothing was
    verified: only verified sessions can expire.
    """

    accepted: bool
    user_id: str | None = None
    reason: str = ""
    verified: bool = False
    carrier: str | None = None
    expires_at: float | None = None


class Authenticator:
    """Turns credentials into an outcome according to the auth mode.

    ``enforce`` rejects anything not valid; ``demo`` accepts everybody as the demo user;
    ``relaxed`` accepts valid tokens as their subject and the rest as a synthetic
    ``relaxed_<n>`` user; ``off`` trusts the unverified subject. These are the permissive
    behaviours the load tester must detect.
    """

    def __init__(
        self,
        mode: str,
        validator: TokenValidator,
        tickets: Tickets,
        *,
        demo_user: str = DEMO_USER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mode = mode
        self.validator = validator
        self.tickets = tickets
        self.demo_user = demo_user
        self._clock = clock
        self._relaxed = 0

    def authenticate(self, creds: Credentials) -> AuthOutcome:
        """The outcome for one connection; consumes a ticket when it checks one."""
        carrier = creds.carrier
        if self.mode == "demo":
            return AuthOutcome(True, self.demo_user, carrier=carrier)
        if self.mode == "off":
            return AuthOutcome(True, self._unverified(creds) or "anonymous", carrier=carrier)
        try:
            user, expires_at = self.verify_expiry(creds)
        except AuthError as exc:
            if self.mode == "relaxed":
                self._relaxed += 1
                return AuthOutcome(True, f"relaxed_{self._relaxed:04d}", exc.reason, False, carrier)
            return AuthOutcome(False, None, exc.reason, False, carrier)
        return AuthOutcome(True, user, "", True, carrier, expires_at)

    def verify(self, creds: Credentials) -> str:
        """The verified subject of the credentials, or ``AuthError``."""
        return self.verify_expiry(creds)[0]

    def verify_expiry(self, creds: Credentials) -> tuple[str, float | None]:
        """The verified subject and token expiry of the credentials, or ``AuthError``."""
        if creds.token is None:
            raise AuthError("no token provided")
        if creds.is_ticket:
            return self.tickets.redeem_claims(creds.token, now=self._clock())
        claims = self.validator.validate(creds.token)
        return claims["sub"], _expiry(claims)

    def refresh(self, user_id: str, token: object) -> tuple[float | None, str | None]:
        """An in-band refresh of a session acked as ``user_id``: ``(new expiry, error)``.

        ``enforce`` needs a valid access token of the same subject, else the error reason.
        The permissive modes accept whatever they are given, as they did at connect time:
        ``relaxed`` keeps a valid same-subject token's expiry, anything else never expires.
        """
        if self.mode in ("demo", "off"):
            return None, None
        try:
            if not isinstance(token, str) or not token:
                raise AuthError("no token provided")
            claims = self.validator.validate(token)
            if claims["sub"] != user_id:
                raise AuthError("token subject differs from the session's user")
        except AuthError as exc:
            return None, None if self.mode == "relaxed" else exc.reason
        return _expiry(claims), None

    def _unverified(self, creds: Credentials) -> str | None:
        if creds.token is None:
            return None
        if creds.is_ticket:
            return self.tickets.peek(creds.token)
        try:
            sub = jwt.decode(creds.token, options={"verify_signature": False}).get("sub")
        except jwt.PyJWTError:
            return None
        return sub if isinstance(sub, str) and sub else None


def _expiry(claims: dict[str, Any]) -> float | None:
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None
