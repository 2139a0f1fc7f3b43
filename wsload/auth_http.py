"""Tokens from the backend's own HTTP endpoints: login, refresh and WebSocket tickets.

Plain ``http.client`` so it runs anywhere, and cooperatively under gevent (Locust patches
the socket module). Each call returns what it got and how long it took; errors carry the
HTTP status so a failed login is classified like a failed upgrade (``http_<status>``).
Passwords and tokens never appear in an exception message.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from wsload import taxonomy
from wsload.config.profile import Auth


class AuthHttpError(Exception):
    """A login, refresh or ticket request that did not give a credential."""

    def __init__(self, failure: str, detail: str, *, status: int | None, elapsed_ms: float):
        self.failure = failure
        self.status = status
        self.elapsed_ms = elapsed_ms
        super().__init__(f"{failure}: {detail}")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str | None
    expires_in: float | None
    user_id: str | None
    elapsed_ms: float

    def __repr__(self) -> str:
        return f"TokenPair(user_id={self.user_id!r}, expires_in={self.expires_in}, tokens=***)"


def _post(
    base_url: str,
    path: str,
    body: dict[str, Any] | None,
    *,
    bearer: str | None = None,
    timeout: float = 10.0,
) -> tuple[dict[str, Any], float]:
    parts = urlsplit(base_url)
    conn_cls = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    started = time.perf_counter()
    try:
        conn.request("POST", path, body=json.dumps(body or {}), headers=headers)
        response = conn.getresponse()
        raw = response.read()
        status = response.status
    except ConnectionRefusedError:
        raise AuthHttpError(
            taxonomy.REFUSED, f"nothing listens at {base_url}", status=None, elapsed_ms=_ms(started)
        ) from None
    except TimeoutError:
        raise AuthHttpError(
            taxonomy.HANDSHAKE_TIMEOUT,
            f"no answer to POST {path}",
            status=None,
            elapsed_ms=_ms(started),
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise AuthHttpError(
            taxonomy.RESET,
            f"POST {path}: {type(exc).__name__}",
            status=None,
            elapsed_ms=_ms(started),
        ) from None
    finally:
        conn.close()
    elapsed = _ms(started)
    if status != 200:
        raise AuthHttpError(
            taxonomy.http_status(status),
            f"POST {path} answered {status}",
            status=status,
            elapsed_ms=elapsed,
        )
    try:
        data = json.loads(raw)
    except ValueError:
        raise AuthHttpError(
            taxonomy.INVALID_HTTP,
            f"POST {path} answered no JSON",
            status=status,
            elapsed_ms=elapsed,
        ) from None
    if not isinstance(data, dict):
        raise AuthHttpError(
            taxonomy.INVALID_HTTP,
            f"POST {path} answered no JSON object",
            status=status,
            elapsed_ms=elapsed,
        )
    return data, elapsed


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _pair(data: dict[str, Any], path: str, elapsed: float) -> TokenPair:
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise AuthHttpError(
            taxonomy.INVALID_HTTP,
            f"POST {path} answered no access_token",
            status=200,
            elapsed_ms=elapsed,
        )
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    return TokenPair(
        access_token=token,
        refresh_token=data.get("refresh_token"),
        expires_in=data.get("expires_in"),
        user_id=None if user.get("id") is None else str(user.get("id")),
        elapsed_ms=elapsed,
    )


def login(
    base_url: str, auth: Auth, email: str, password: str, *, timeout: float = 10.0
) -> TokenPair:
    """``POST login_path {email, password}``: an access and refresh token."""
    data, elapsed = _post(
        base_url, auth.login_path, {"email": email, "password": password}, timeout=timeout
    )
    return _pair(data, auth.login_path, elapsed)


def refresh(base_url: str, auth: Auth, refresh_token: str, *, timeout: float = 10.0) -> TokenPair:
    """``POST refresh_path {refresh_token}``: a new pair."""
    data, elapsed = _post(
        base_url, auth.refresh_path, {"refresh_token": refresh_token}, timeout=timeout
    )
    return _pair(data, auth.refresh_path, elapsed)


def fetch_ticket(
    base_url: str, auth: Auth, access_token: str, *, timeout: float = 10.0
) -> tuple[str, float]:
    """``POST ticket_path`` with the bearer token: a short-lived ticket for ``?ticket=``."""
    data, elapsed = _post(base_url, auth.ticket_path, None, bearer=access_token, timeout=timeout)
    ticket = data.get(auth.ticket_field)
    if not isinstance(ticket, str) or not ticket:
        raise AuthHttpError(
            taxonomy.INVALID_HTTP,
            f"POST {auth.ticket_path} answered no {auth.ticket_field}",
            status=200,
            elapsed_ms=elapsed,
        )
    return ticket, elapsed
