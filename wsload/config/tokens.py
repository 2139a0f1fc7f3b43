"""Per-user JWTs: minted locally with a key loaded once, or read from a credentials file.

Minting cost matters under load (RS256 with a PEM re-parsed per token is 150x slower than
with the key object kept), so a ``TokenMinter`` resolves its signing key at construction,
where a missing secret or an unreadable key file also fails: before any load starts.
"""

from __future__ import annotations

import csv
import logging
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from wsload.config.hmac_jwt import HmacSigner
from wsload.config.profile import TokenSpec
from wsload.config.templates import fill_template
from wsload.errors import ConfigError

SECRET_ENV = "JWT_SECRET_KEY"
log = logging.getLogger("wsload")


# RFC 7518 3.2: an HMAC key at least as long as the hash output.
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_WARNED: set[str] = set()
# wsload tells the user about a short secret once, in its own words (short_secret_warning).
warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)


def _read_key_file(path: Path, kind: str, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the JWT {kind} key file {path}: {exc.strerror or exc}",
            fix=f"check {option}: the path and its read permission",
        ) from None


def short_secret_warning(algorithm: str, secret: str) -> str | None:
    """One readable line when an HMAC secret is shorter than RFC 7518 asks, else None.

    PyJWT warns about it on every token with a Python warning (a raw line with a file
    name and line number, once per process); wsload says it once, in words, and keeps
    PyJWT's warning quiet. The secret itself is never part of the text.
    """
    needed = HMAC_MIN_BYTES.get(algorithm)
    length = len(secret.encode("utf-8"))
    if needed is None or length >= needed:
        return None
    return (
        f"the JWT secret is {length} bytes, shorter than the {needed} bytes RFC 7518 asks "
        f"for {algorithm}: tokens still work, but a production secret should be longer"
    )


def load_signing_key(algorithm: str, *, secret: str | None = None, key_file: str | None = None):
    """The key object ``jwt.encode`` needs, loaded once; ``ConfigError`` when unusable."""
    if algorithm.startswith("HS"):
        secret = secret if secret is not None else os.environ.get(SECRET_ENV)
        if not secret:
            raise ConfigError(
                f"no JWT secret for {algorithm} tokens",
                fix=f"pass --jwt-secret or set {SECRET_ENV} to the secret the server "
                "validates tokens with",
            )
        warning = short_secret_warning(algorithm, secret)
        if warning is not None and warning not in _WARNED:
            _WARNED.add(warning)
            log.warning("%s", warning)
        return secret
    if not key_file:
        raise ConfigError(
            f"no private key for {algorithm} tokens",
            fix="pass --jwt-private-key PATH to a PEM file holding the signing key",
        )
    path = Path(key_file)
    data = _read_key_file(path, "private", "--jwt-private-key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"the JWT private key file {path} holds no usable unencrypted PEM private key "
            f"({type(exc).__name__})",
            fix=f"give --jwt-private-key a PEM private key for {algorithm} without a passphrase",
        ) from None


def load_verifying_key(algorithm: str, *, secret: str | None = None, key_file: str | None = None):
    """The key that validates tokens: the secret, or a public key (or a private key's)."""
    if algorithm.startswith("HS"):
        return load_signing_key(algorithm, secret=secret)
    if not key_file:
        raise ConfigError(
            f"no public key to validate {algorithm} tokens",
            fix="pass --jwt-public-key PATH to a PEM public key",
        )
    path = Path(key_file)
    data = _read_key_file(path, "public", "--jwt-public-key")
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        try:
            return serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise ConfigError(
                f"the JWT key file {path} holds no PEM public or private key",
                fix="give --jwt-public-key a PEM public key",
            ) from None


class TokenMinter:
    """Mints access tokens carrying the profile's claims for any subject."""

    def __init__(
        self,
        spec: TokenSpec,
        *,
        secret: str | None = None,
        key_file: str | None = None,
        lifetime_s: float | None = None,
    ) -> None:
        self.spec = spec
        self.algorithm = spec.algorithm
        self.lifetime_s = float(lifetime_s if lifetime_s is not None else spec.lifetime_s)
        if self.lifetime_s <= 0:
            raise ConfigError(
                f"token lifetime must be positive, got {self.lifetime_s}",
                fix="pass a --token-lifetime greater than 0 seconds",
            )
        self._key = load_signing_key(spec.algorithm, secret=secret, key_file=key_file)
        # HMAC tokens skip PyJWT's per-token key preparation (same bytes, far less CPU)
        hs = HmacSigner.supports(self.algorithm) and isinstance(self._key, str | bytes)
        self._hmac = HmacSigner(self.algorithm, self._key) if hs else None

    def claims(
        self, subject: str, *, now: float | None = None, lifetime_s: float | None = None
    ) -> dict[str, Any]:
        """The claim set of a fresh token for ``subject`` (unique ``jti`` each time)."""
        issued = int(now if now is not None else time.time())
        life = lifetime_s if lifetime_s is not None else self.lifetime_s
        claims: dict[str, Any] = fill_template(self.spec.claims, {"sub": subject})
        claims[self.spec.subject_claim] = subject  # "sub" unless the profile names another
        claims.update(iat=issued, exp=issued + max(1, round(life)))
        if self.spec.jti:
            claims["jti"] = uuid.uuid4().hex
        if self.spec.issuer:
            claims["iss"] = self.spec.issuer
        if self.spec.audience:
            claims["aud"] = self.spec.audience
        return claims

    def mint(
        self,
        subject: str,
        *,
        now: float | None = None,
        lifetime_s: float | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> str:
        """A signed token for ``subject``; ``overrides`` replace or (with None) drop claims."""
        claims = self.claims(subject, now=now, lifetime_s=lifetime_s)
        for name, value in (overrides or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        if self._hmac is not None and not _has_datetimes(claims):
            return self._hmac.sign(claims)
        return jwt.encode(claims, self._key, algorithm=self.algorithm)


def _has_datetimes(claims: dict[str, Any]) -> bool:
    """Whether a time claim is a datetime, which only ``jwt.encode`` converts."""
    return any(isinstance(claims.get(name), datetime) for name in ("exp", "iat", "nbf"))


def subject_for(prefix: str, node: str, index: int) -> str:
    """A subject unique across processes: the node tag keeps workers apart."""
    return f"{prefix}-{node}-{index:06d}"


def node_tag(worker_index: int | None = None) -> str:
    """A short tag unique per generator process (worker index, else host and pid)."""
    if worker_index is not None and worker_index >= 0:
        return f"w{worker_index}"
    host = os.uname().nodename.split(".")[0][:12] or "host"
    return f"{host}-{os.getpid()}"


def unverified_subject(token: str) -> str | None:
    """The ``sub`` of a token without checking it (what the server should ack as)."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None


@dataclass(frozen=True)
class Credential:
    email: str
    password: str

    def __repr__(self) -> str:
        return f"Credential(email={self.email!r}, password='***')"


def load_credentials(path: str | Path) -> list[Credential]:
    """Per-user logins from a CSV with an ``email,password`` header (``username`` also works)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the credentials file {path}: {exc.strerror or exc}",
            fix="check --credentials: a CSV file with a header line 'email,password'",
        ) from None
    rows: Iterator[dict[str, str]] = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in (rows.fieldnames or [])]  # type: ignore[attr-defined]
    user_col = next((f for f in ("email", "username", "user") if f in fields), None)
    if user_col is None or "password" not in fields:
        raise ConfigError(
            f"the credentials file {path} has no 'email' and 'password' columns "
            f"(header read: {','.join(fields) or 'nothing'})",
            fix="make its first line 'email,password' and put one user per line below it",
        )
    creds: list[Credential] = []
    for line_no, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not row.get(user_col) or not row.get("password"):
            raise ConfigError(
                f"the credentials file {path} line {line_no} lacks an email or a password",
                fix="give every line both columns, or delete the line",
            )
        creds.append(Credential(row[user_col], row["password"]))
    if not creds:
        raise ConfigError(
            f"the credentials file {path} lists no users",
            fix="add one 'email,password' line per user below the header",
        )
    return creds
