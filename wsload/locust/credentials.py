"""A user's credentials over its whole life: minted, logged in, read from a token file or
granted by an identity provider; refreshed, ticketed.

HTTP goes through Locust's FastHttpSession, so logins, grants, refreshes and ticket
requests are timed in Locust's stats (``http:login``, ``http:token``, ``http:refresh``,
``http:ticket``) and, through the glue's request listener, kept as raw rows like every
other sample.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from locust import User
from locust.contrib.fasthttp import FastHttpSession
from locust.exception import StopUser

from wsload.config.options import refresh_margin
from wsload.config.token_file import claim_text, unverified_claims
from wsload.locust.runtime import Runtime
from wsload.locust.token_endpoint import GRANT_NAME, REFRESH_NAME, post_token_request
from wsload.net.oauth2 import TokenAnswer, grant_request, refresh_request
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

    def __init__(
        self, user: User, rt: Runtime, index: int, subject: str, *, borrowed: bool = False
    ) -> None:
        """``borrowed``: the first login or file line, shared (the probe user's sample token)."""
        self.rt = rt
        self.subject = subject
        self.token: str | None = None
        self.refresh_token: str | None = None
        self.expires_at: float | None = None  # epoch seconds
        self._refresh_at: float | None = None  # epoch seconds; None: never
        self._refresh_failures = 0  # refreshes failed in a row (their backoff)
        self._rng = random.Random()
        self.lifetime_s: float = rt.options.token_lifetime_s
        opts = rt.options
        source = opts.token_source
        self.http: FastHttpSession | None = None
        if source != "mint" or opts.carrier == "ticket":
            self.http = FastHttpSession(
                rt.http_url, user.environment.events.request, user, **https_options(opts.tls)
            )
        self.file_token = None
        self.credential = None
        if source == "file":
            self.file_token = opts.token_file[0] if borrowed else rt.file_token_for(index)
            if self.file_token is None:
                log.warning(
                    "wsload: more users than lines in --token-file (%d, one user each); "
                    "user %d stays idle",
                    len(opts.token_file),
                    index,
                )
                raise StopUser()
        elif source == "login" or (source == "oauth2" and opts.credentials):
            self.credential = opts.credentials[0] if borrowed else rt.credential_for(index)
            if self.credential is None:
                log.warning(
                    "wsload: more users than --credentials allow (%d logins x %d connections "
                    "each); user %d stays idle",
                    len(opts.credentials),
                    rt.profile.limits.connections_per_user,
                    index,
                )
                raise StopUser()

    # tokens ----------------------------------------------------------------------------
    def acquire(self) -> bool:
        """A first token; False when the login failed (the failure is already recorded)."""
        source = self.rt.options.token_source
        if source == "mint":
            self._set(self.rt.minter.mint(self.subject), None)
            return True
        if source == "file":
            return self._take_file_token()
        if source == "oauth2":
            oauth2 = self.rt.options.oauth2
            credential = self.credential
            request = grant_request(
                oauth2,
                credential.email if credential else None,
                credential.password if credential else None,
            )
            return self._take_answer(post_token_request(self.http, oauth2, request, GRANT_NAME))
        auth = self.rt.profile.auth
        data = self._post(
            auth.login_path,
            {"email": self.credential.email, "password": self.credential.password},
            "http:login",
        )
        return data is not None and self._take_pair(data)

    def refresh(self) -> bool:
        """A new token before the old one expires (``_renew``). When that fails, the next
        try waits the run's reconnect backoff: an identity provider that is down is not
        asked again at every step of every user."""
        if self._renew():
            self._refresh_failures = 0
            return True
        if self._refresh_at is not None:
            delay = self.rt.options.backoff.delay(self._refresh_failures, self._rng)
            self._refresh_at = time.time() + delay
            self._refresh_failures += 1
        return False

    def _renew(self) -> bool:
        """Re-mint, or use the refresh token (at the token endpoint when the run has one,
        else at the backend's refresh path), else log in or grant again."""
        if self.rt.options.token_source == "mint":
            return self.acquire()
        oauth2 = self.rt.options.oauth2
        if self.refresh_token and oauth2 is not None:
            request = refresh_request(oauth2, self.refresh_token)
            answer = post_token_request(self.http, oauth2, request, REFRESH_NAME)
            if self._take_answer(answer):
                return True
        elif self.refresh_token:
            data = self._post(
                self.rt.profile.auth.refresh_path,
                {"refresh_token": self.refresh_token},
                "http:refresh",
            )
            if data is not None and self._take_pair(data):
                return True
        if self.file_token is not None:
            # A pre-issued token cannot be issued again: stop trying (the failure is
            # recorded) and use the token until the server refuses it.
            self._refresh_at = None
            return False
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
        """Who the server must ack: the minted subject, the token file's subject, else the
        token's ``ack.subject_claim`` claim (None for a token that is not a JWT: unchecked)."""
        if self.rt.options.token_source == "mint":
            return self.subject
        if self.file_token is not None and self.file_token.subject is not None:
            return self.file_token.subject
        claim = self.rt.profile.ack.subject_claim
        return claim_text(unverified_claims(self.token or ""), claim)

    # internals -------------------------------------------------------------------------
    def _set(self, token: str, refresh_token: str | None, expires_at: float | None = None) -> None:
        self.token = token
        self.refresh_token = refresh_token or self.refresh_token
        exp = expires_at if expires_at is not None else _claim_exp(token)
        now = time.time()
        self.expires_at = exp if exp is not None else now + self.lifetime_s
        if exp is not None:
            self.lifetime_s = max(1.0, exp - now)
        if self.rt.profile.auth.refresh != "none" and self._can_refresh():
            self._refresh_at = self.expires_at - refresh_margin(self.rt.options, self.lifetime_s)
        else:
            self._refresh_at = None

    def _can_refresh(self) -> bool:
        """A pre-issued token without a refresh token cannot be renewed: it is used until
        the server refuses it (the start of the run warns when that happens in the run)."""
        return self.file_token is None or self.refresh_token is not None

    def _take_file_token(self) -> bool:
        line = self.file_token
        if line.expires_at is not None and line.expires_at <= time.time():
            return False  # expired and not (or no longer) refreshable: nothing to connect with
        self.refresh_token = None
        self._set(line.access_token, line.refresh_token, line.expires_at)
        return True

    def _take_answer(self, answer: TokenAnswer | None) -> bool:
        if answer is None:
            return False
        self._set(answer.access_token, answer.refresh_token, answer.expires_at)
        return True

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
