"""A user's requests to the identity provider's token endpoint, through Locust's HTTP client.

Timed in Locust's stats and kept as raw rows like the login flows: ``http:token`` for the
grant, ``http:refresh`` for the refresh-token grant. A refusal fails the sample with its
taxonomy id (``http_<status>``); what the provider said (``error``, ``error_description``)
is logged once per distinct answer. Bodies and headers (passwords, the client secret,
tokens) are never recorded or logged.
"""

from __future__ import annotations

import logging

from locust.contrib.fasthttp import FastHttpSession

from wsload.net.oauth2 import OAuth2Client, TokenAnswer, TokenError, TokenRequest, parse_answer

log = logging.getLogger("wsload")
GRANT_NAME = "http:token"
REFRESH_NAME = "http:refresh"
_SAID: set[str] = set()


def post_token_request(
    http: FastHttpSession, client: OAuth2Client, request: TokenRequest, name: str
) -> TokenAnswer | None:
    """The tokens of one request, or None (the failed sample is recorded)."""
    with http.post(
        request.url, data=request.body, headers=request.headers, name=name, catch_response=True
    ) as response:
        status = response.status_code or 0
        try:
            return parse_answer(client, status, response.content or b"")
        except TokenError as err:
            response.failure(err.failure)
            if err.detail not in _SAID and len(_SAID) < 32:
                _SAID.add(err.detail)
                log.warning("wsload: %s at the token endpoint: %s", name, err.detail)
            return None
