"""Pre-issued tokens, one user per line (``--token-source file --token-file FILE``).

Behind an identity provider the tester often cannot sign tokens, only obtain them. A token
file hands wsload one user's tokens per line, in either form:

- ``ACCESS_TOKEN`` or ``ACCESS_TOKEN,REFRESH_TOKEN`` (comma-separated, spaces ignored);
- a JSON object ``{"access_token": ..., "refresh_token": ..., "subject": ...,
  "expires_at": ...}``: only ``access_token`` is required; ``subject`` is the user id the
  server's ack must name (default: the token's ``ack.subject_claim`` claim, ``sub``);
  ``expires_at`` (epoch seconds) gives the expiry of a token that is not a JWT.

Blank lines and lines starting with ``#`` are skipped. Expiry comes from the token's
``exp`` claim, read WITHOUT verifying the signature (wsload cannot: the provider signs).
A file holding an expired token is refused before any load; tokens that will expire
during the planned run are reported once at start (``expiry_warning``). Token text never
appears in a message: lines are named by number.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from wsload.errors import ConfigError

FIX_FORMAT = (
    "put one user per line: ACCESS_TOKEN[,REFRESH_TOKEN], or a JSON object "
    '{"access_token": "...", "refresh_token": "...", "subject": "..."}'
)


@dataclass(frozen=True)
class FileToken:
    """One user's pre-issued tokens; ``subject`` is who the ack must name (None: unknown)."""

    line: int
    access_token: str
    refresh_token: str | None
    subject: str | None
    expires_at: float | None  # epoch seconds; None: unknown (not a JWT, no expires_at)

    def __repr__(self) -> str:
        return f"FileToken(line={self.line}, subject={self.subject!r}, tokens='***')"


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT without checking its signature; None for anything else."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def claim_text(claims: dict[str, Any] | None, name: str) -> str | None:
    """A claim as the text an ack carries; None when missing or not a scalar."""
    value = None if claims is None else claims.get(name)
    if value is None or isinstance(value, dict | list) or value == "":
        return None
    return str(value)


def claim_expiry(claims: dict[str, Any] | None) -> float | None:
    exp = None if claims is None else claims.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _parse_line(path: Path, number: int, text: str, subject_claim: str) -> FileToken:
    subject: str | None = None
    expires_at: float | None = None
    if text.startswith("{"):
        try:
            row = json.loads(text)
        except ValueError:
            raise ConfigError(
                f"the token file {path} line {number} is not valid JSON", fix=FIX_FORMAT
            ) from None
        access, refresh = row.get("access_token"), row.get("refresh_token")
        if row.get("subject") is not None:
            subject = str(row["subject"])
        if isinstance(row.get("expires_at"), int | float):
            expires_at = float(row["expires_at"])
    else:
        parts = [part.strip() for part in text.split(",")]
        if len(parts) > 2:
            raise ConfigError(
                f"the token file {path} line {number} has {len(parts)} comma-separated fields, "
                "at most 2 are allowed",
                fix=FIX_FORMAT,
            )
        access, refresh = parts[0], (parts[1] if len(parts) == 2 else None)
    if not isinstance(access, str) or not access:
        raise ConfigError(
            f"the token file {path} line {number} has no access token", fix=FIX_FORMAT
        )
    if refresh is not None and (not isinstance(refresh, str) or not refresh):
        refresh = None
    claims = unverified_claims(access)
    if subject is None:
        subject = claim_text(claims, subject_claim)
    exp = claim_expiry(claims)
    return FileToken(number, access, refresh, subject, exp if exp is not None else expires_at)


def load_token_file(
    path: str | Path, *, subject_claim: str = "sub", now: float | None = None
) -> tuple[FileToken, ...]:
    """Every user's tokens; ``ConfigError`` for an unreadable, malformed or expired file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(
            f"cannot read the token file {path}: {reason}",
            fix="check --token-file: a text file with one user's tokens per line",
        ) from None
    tokens = tuple(
        _parse_line(path, number, line.strip(), subject_claim)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not tokens:
        raise ConfigError(f"the token file {path} lists no tokens", fix=FIX_FORMAT)
    now = time.time() if now is None else now
    expired = [t for t in tokens if t.expires_at is not None and t.expires_at <= now]
    if expired:
        first = expired[0]
        lines = ", ".join(str(t.line) for t in expired[:10])
        lines += ", ..." if len(expired) > 10 else ""
        raise ConfigError(
            f"the token file {path} holds {len(expired)} expired access "
            f"token{'s' if len(expired) > 1 else ''} of {len(tokens)} (line {first.line} expired "
            f"{_ago(now - first.expires_at)} ago, at {_utc(first.expires_at)}; lines {lines})",
            fix="issue fresh tokens from the identity provider, or delete those lines",
        )
    return tokens


def expiry_warning(
    tokens: tuple[FileToken, ...], run_time_s: float | None, *, can_refresh: bool, now: float
) -> str | None:
    """One line when tokens expire during the planned run (``-t``), else None."""
    if not run_time_s:
        return None
    ends = now + run_time_s
    expiring = [t for t in tokens if t.expires_at is not None and t.expires_at < ends]
    if not expiring:
        return None
    first = min(expiring, key=lambda t: t.expires_at or 0.0)
    stranded = [t for t in expiring if not (can_refresh and t.refresh_token)]
    what = (
        f"{len(stranded)} of them have no refresh token (or nowhere to refresh it), so their "
        "users are refused by the server from then on (auth_rejected)"
        if stranded
        else "each has a refresh token, which is used before it expires"
    )
    return (
        f"{len(expiring)} of {len(tokens)} tokens of the token file expire during the planned "
        f"run of {run_time_s:.0f} s (the first, line {first.line}, in "
        f"{_ago((first.expires_at or now) - now)}); {what}"
    )


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _utc(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch or 0.0))
