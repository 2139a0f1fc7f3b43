"""An identity provider's OAuth2 token endpoint (RFC 6749), sans I/O plus one blocking check.

wsload asks the token endpoint for tokens the way a frontend's backend-for-frontend or a
service does: the password grant (one login per user), the client-credentials grant, and
the refresh-token grant before a token expires; form-encoded (the RFC) or JSON bodies; the
client authenticated by HTTP Basic or by body fields. Requests are built and answers
parsed here without any socket, so the users (Locust's HTTP client, timed in its stats)
and the check before load (``check_token_endpoint``, urllib) share one implementation.

The client secret and passwords go into request bodies and headers only: ``__repr__`` hides
them and no message built here contains them.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from wsload.config.profile import OAuth2
from wsload.config.templates import get_field
from wsload.config.token_file import claim_expiry, unverified_claims
from wsload.errors import ConfigError
from wsload.net.tls import TlsSettings, new_client_context


@dataclass(frozen=True)
class OAuth2Client:
    """The profile's ``[oauth2]`` table with the options applied and the secret resolved."""

    endpoint: str
    spec: OAuth2
    client_id: str
    client_secret: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"OAuth2Client(endpoint={self.endpoint!r}, client_id={self.client_id!r}, ...)"


@dataclass(frozen=True)
class TokenRequest:
    url: str
    headers: dict[str, str]
    body: str

    def __repr__(self) -> str:
        return f"TokenRequest(url={self.url!r}, body='***')"


@dataclass(frozen=True)
class TokenAnswer:
    """A parsed token answer; ``expires_at`` from ``expires_in``, else the token's ``exp``."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None

    def __repr__(self) -> str:
        return f"TokenAnswer(expires_at={self.expires_at!r}, tokens='***')"


class TokenError(Exception):
    """A refused or unusable token answer: ``failure`` is a taxonomy id, ``detail`` is safe
    to record (the provider's ``error`` and ``error_description``, never a credential)."""

    def __init__(self, failure: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail
        self.status = status


def grant_request(
    client: OAuth2Client, username: str | None = None, password: str | None = None
) -> TokenRequest:
    """The request of the profile's grant (``password`` needs a username and password)."""
    spec = client.spec
    fields: dict[str, Any] = {"grant_type": spec.grant}
    if spec.grant == "password":
        fields[spec.username_param] = username or ""
        fields[spec.password_param] = password or ""
    if spec.scope:
        fields["scope"] = spec.scope
    fields.update(spec.params)
    return _request(client, fields)


def refresh_request(client: OAuth2Client, refresh_token: str) -> TokenRequest:
    """The refresh-token grant (RFC 6749 section 6)."""
    fields: dict[str, Any] = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client.spec.scope:
        fields["scope"] = client.spec.scope
    return _request(client, fields)


def _request(client: OAuth2Client, fields: dict[str, Any]) -> TokenRequest:
    spec = client.spec
    headers = {"Accept": "application/json"}
    if spec.client_auth == "basic" and client.client_id:
        # RFC 6749 2.3.1: each part form-encoded before the Basic encoding.
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    elif spec.client_auth == "body" and client.client_id:
        fields["client_id"] = client.client_id
        if client.client_secret:
            fields["client_secret"] = client.client_secret
    elif client.client_id:  # "none": a public client names itself
        fields["client_id"] = client.client_id
    if spec.body == "json":
        headers["Content-Type"] = "application/json"
        body = json.dumps(fields)
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})
    return TokenRequest(client.endpoint, headers, body)


def parse_answer(
    client: OAuth2Client, status: int, body: bytes | str, now: float | None = None
) -> TokenAnswer:
    """The tokens of a 200 answer; ``TokenError`` for a refusal or an answer without them."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if status != 200:
        raise TokenError(f"http_{status}" if status else "refused", _refusal(status, data), status)
    if not isinstance(data, dict):
        raise TokenError("invalid_http", "the token endpoint answered 200 without a JSON object")
    spec = client.spec
    access = get_field(data, spec.access_token_field)
    if not isinstance(access, str) or not access:
        present = ", ".join(sorted(data)) or "none"
        raise TokenError(
            "invalid_http",
            f"the token answer has no '{spec.access_token_field}' (fields: {present})",
        )
    refresh = get_field(data, spec.refresh_token_field) if spec.refresh_token_field else None
    expires_in = get_field(data, spec.expires_in_field) if spec.expires_in_field else None
    now = time.time() if now is None else now
    if isinstance(expires_in, str) and expires_in.replace(".", "", 1).isdigit():
        expires_in = float(expires_in)
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        expires_at: float | None = now + float(expires_in)
    else:
        expires_at = claim_expiry(unverified_claims(access))
    refresh = refresh if isinstance(refresh, str) and refresh else None
    return TokenAnswer(access, refresh, expires_at)


def _refusal(status: int, data: Any) -> str:
    """What the provider said (RFC 6749 5.2 ``error`` and ``error_description``)."""
    said = ""
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        said = data["error"]
        description = data.get("error_description")
        if isinstance(description, str) and description:
            said += f": {description[:160]}"
    return f"HTTP {status}" + (f" ({said})" if said else "")


def check_token_endpoint(
    client: OAuth2Client,
    username: str | None = None,
    password: str | None = None,
    *,
    timeout_s: float = 10.0,
    tls: TlsSettings | None = None,
) -> TokenAnswer:
    """One real grant before load: ``ConfigError`` with the cause and the fix if refused.

    Over https it trusts what the run's requests trust (``tls``: ``--tls-ca``,
    ``--tls-insecure``, a client certificate), so the check and the load agree."""
    request = grant_request(client, username, password)
    http_request = urllib.request.Request(
        request.url, data=request.body.encode(), headers=request.headers, method="POST"
    )
    grant = client.spec.grant
    try:
        context = new_client_context(tls) if tls is not None else None
        with urllib.request.urlopen(http_request, timeout=timeout_s, context=context) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise ConfigError(
                f"the token endpoint {client.endpoint} has a certificate this run does not "
                f"trust: {reason.verify_message or reason}",
                fix="pass the provider's CA with --tls-ca ca.pem (or --tls-insecure for a "
                "throwaway test provider)",
            ) from None
        raise ConfigError(
            f"the token endpoint {client.endpoint} cannot be reached: {reason}",
            fix="check oauth2.endpoint in the profile (or --oauth2-endpoint) and that the "
            "identity provider is up",
        ) from None
    try:
        return parse_answer(client, status, body)
    except TokenError as err:
        raise ConfigError(
            f"the token endpoint {client.endpoint} refused the {grant} grant"
            + (f" for the first user of --credentials ({username})" if username else "")
            + f": {err.detail}",
            fix=_fix(err, grant),
        ) from None


def _fix(err: TokenError, grant: str) -> str:
    if err.status == 401 or "invalid_client" in err.detail:
        return (
            "check the client: --oauth2-client-id and --oauth2-client-secret "
            "(WSLOAD_OAUTH2_CLIENT_SECRET), and oauth2.client_auth (basic or body)"
        )
    if "invalid_grant" in err.detail and grant == "password":
        return "check the email and password of the first line of --credentials"
    if "unsupported_grant_type" in err.detail or "unauthorized_client" in err.detail:
        return f"allow the {grant} grant for the client at the provider, or change oauth2.grant"
    if err.failure == "invalid_http":
        return (
            "set oauth2.access_token_field (and expires_in_field, refresh_token_field) "
            "to the dotted paths of the answer's fields"
        )
    return "check oauth2.endpoint, oauth2.grant, oauth2.scope and oauth2.params in the profile"
