"""A user's credentials over its whole life: minted or logged in, refreshed, ticketed.

HTTP goes through Locust's FastHttpSession, so logins, refreshes and ticket requests are
timed in Locust's stats (``http:login``, ``http:refresh``, ``http:ticket``) and, through
the glue's request listener, kept as raw rows like every other sample.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from locust import User
from locust.contrib.fasthttp import FastHttpSession
from locust.exception import StopUser

from wsload.config.options import refresh_margin
from wsload.config.tokens import unverified_subject
from wsload.locust.runtime import Runtime
from wsload.net.tls import https_options
from wsload.protocol.carrier import Placement, place

log = logging.getLogger("wsload")


def _claim_exp(token: str) -> float | None:
    import jwt

    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) else None


class UserCredentials:
    """The token one user connects with, and when it must be refreshed."""

    def __init__(self, user: User, rt: Runtime, index: int, subject: str) -> None:
        self.rt = rt
        self.subject = subject
        self.token: str | None = None
        self.refresh_token: str | None = None
        self.expires_at: float | None = None  # epoch seconds
        self._refresh_at: float | None = None  # epoch seconds; None: never
        self.lifetime_s: float = rt.options.token_lifetime_s
        opts = rt.options
        self.http: FastHttpSession | None = None
        if opts.token_source == "login" or opts.carrier == "ticket":
            self.http = FastHttpSession(
                rt.http_url, user.environment.events.request, user, **https_options(opts.tls)
            )
        self.credential = rt.credential_for(index) if opts.token_source == "login" else None
        if opts.token_source == "login" and self.credential is None:
            log.warning(
                "wsload: more users than --credentials allow (%d logins x %d connections each); "
                "user %d stays idle",
                len(opts.credentials),
                rt.profile.limits.connections_per_user,
                index,
            )
            raise StopUser()

    # tokens ----------------------------------------------------------------------------
    def acquire(self) -> bool:
        """A first token; False when the login failed (the failure is already recorded)."""
        if self.credential is None:
            self._set(self.rt.minter.mint(self.subject), None)
            return True
        auth = self.rt.profile.auth
        data = self._post(
            auth.login_path,
            {"email": self.credential.email, "password": self.credential.password},
            "http:login",
        )
        return data is not None and self._take_pair(data)

    def refresh(self) -> bool:
        """A new token before the old one expires: re-mint, or POST the refresh token."""
        if self.credential is None:
            return self.acquire()
        if self.refresh_token:
            data = self._post(
                self.rt.profile.auth.refresh_path,
                {"refresh_token": self.refresh_token},
                "http:refresh",
            )
            if data is not None and self._take_pair(data):
                return True
        return self.acquire()  # no or refused refresh token: log in again

    def due_in(self) -> float | None:
        """Seconds until the token should be refreshed (negative: overdue), None if never."""
        at = self._refresh_at
        return None if at is None else at - time.time()

    def placement(self) -> Placement | None:
        """Where the token goes in the next upgrade; a ticket is fetched first if needed."""
        rt = self.rt
        if rt.options.carrier != "ticket":
            return place(rt.profile.auth, rt.url, self.token, carrier=rt.options.carrier)
        auth = rt.profile.auth
        data = self._post(auth.ticket_path, None, "http:ticket", bearer=self.token)
        ticket = data.get(auth.ticket_field) if data else None
        if not isinstance(ticket, str) or not ticket:
            return None
        return place(auth, rt.url, None, ticket=ticket)

    @property
    def expected_subject(self) -> str | None:
        """Who the server must ack: the token's own subject."""
        return self.subject if self.credential is None else unverified_subject(self.token or "")

    # internals -------------------------------------------------------------------------
    def _set(self, token: str, refresh_token: str | None) -> None:
        self.token = token
        self.refresh_token = refresh_token or self.refresh_token
        exp = _claim_exp(token)
        now = time.time()
        self.expires_at = exp if exp is not None else now + self.lifetime_s
        if exp is not None:
            self.lifetime_s = max(1.0, exp - now)
        if self.rt.profile.auth.refresh != "none":
            self._refresh_at = self.expires_at - refresh_margin(self.rt.options, self.lifetime_s)

    def _take_pair(self, data: dict[str, Any]) -> bool:
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            return False
        self._set(token, data.get("refresh_token"))
        return True

    def _post(
        self, path: str, body: dict[str, Any] | None, name: str, bearer: str | None = None
    ) -> dict[str, Any] | None:
        assert self.http is not None
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        with self.http.post(
            path, json=body or {}, headers=headers, name=name, catch_response=True
        ) as response:
            status = response.status_code
            if status != 200:
                response.failure(f"http_{status}" if status else "refused")
                return None
            try:
                data = response.json()
            except ValueError:
                response.failure("invalid_http")
                return None
            if not isinstance(data, dict):
                response.failure("invalid_http")
                return None
            return data
