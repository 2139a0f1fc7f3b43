"""The target's HTTP API: health, stats, login, refresh and WebSocket tickets."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from aiohttp import web

from wsload.target.auth import (
    AuthError,
    bearer_token,
)
from wsload.target.state import STATE, TargetState, stats_snapshot
from wsload.target.stats import aggregate


async def health_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, Any] = {
        "status": "healthy",
        "pid": state.pid,
        "worker": state.worker_index,
        "uptime_s": round(time.time() - state.started, 3),
        "auth_mode": state.config.auth_mode,
        **asdict(state.counters),
        "config": state.config.summary(),
    }
    return web.json_response(body)


async def stats_handler(request: web.Request) -> web.Response:
    """``GET /stats``: this process's counters; ``?all=1``: summed over every worker."""
    state = request.app[STATE]
    own = stats_snapshot(state)
    if request.query.get("all", "0").lower() in ("", "0", "false", "no"):
        return web.json_response(own)
    others = await state.share.collect() if state.share is not None else []
    return web.json_response(aggregate(own, others))


def error_response(status: int, detail: str, **extra: Any) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response({"detail": detail, **extra}, status=status, headers=headers)


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _token_pair(state: TargetState, subject: str) -> dict[str, Any]:
    minter = state.minter
    assert minter is not None
    config = state.config
    access = minter.mint(subject, overrides={"email": subject})
    refresh = minter.mint(
        subject,
        lifetime_s=config.refresh_lifetime_s,
        overrides={"email": subject, "token_type": "refresh", "type": "refresh"},
    )
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": round(config.access_lifetime_s),
        "user": {"id": subject, "email": subject},
    }


def _no_signing_key() -> web.Response:
    return error_response(
        501, "this target holds no signing key: start it with --jwt-private-key to log in"
    )


async def login_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    if body is None or not isinstance(body.get("email"), str) or "password" not in body:
        return error_response(422, "body must be JSON with 'email' and 'password'")
    if state.minter is None:
        return _no_signing_key()
    email, password = body["email"].strip(), body["password"]
    if state.users is not None:
        ok = email in state.users and state.users[email] == password
    else:
        ok = bool(email) and password == state.config.login_password
    if not ok:
        state.counters.login_failed += 1
        return error_response(401, "Invalid email or password")
    state.counters.logins += 1
    return web.json_response(_token_pair(state, email))


async def refresh_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    if body is None or not isinstance(body.get("refresh_token"), str):
        return error_response(422, "body must be JSON with 'refresh_token'")
    if state.minter is None:
        return _no_signing_key()
    try:
        claims = state.auth.validator.validate(body["refresh_token"], token_type="refresh")
    except AuthError as exc:
        state.counters.refresh_failed += 1
        return error_response(401, "Invalid refresh token", reason=exc.reason)
    state.counters.refreshes += 1
    return web.json_response(_token_pair(state, claims["sub"]))


async def ticket_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return error_response(401, "Authorization: Bearer <access token> required")
    try:
        claims = state.auth.validator.validate(token)
    except AuthError as exc:
        return error_response(401, "Invalid access token", reason=exc.reason)
    state.counters.tickets_issued += 1
    ticket = state.auth.tickets.issue(claims["sub"], token_exp=claims.get("exp"))
    return web.json_response({"ticket": ticket, "expires_in": round(state.auth.tickets.ttl_s)})


# WebSocket -------------------------------------------------------------------------------
