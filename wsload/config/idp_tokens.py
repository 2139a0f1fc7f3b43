"""The run configuration of tokens from an identity provider: checked once, before load.

``--token-source file`` reads the token file (expired tokens refused); ``--token-source
oauth2`` resolves the profile's ``[oauth2]`` table with the options that override it. A
token file may name an endpoint too: its refresh tokens are then refreshed there, else at
the backend's ``auth.refresh_path``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wsload.config.profile import Profile
from wsload.config.token_file import (
    FileToken,
    claim_text,
    expiry_warning,
    load_token_file,
    unverified_claims,
)
from wsload.config.tokens import SECRET_ENV, TokenMinter
from wsload.errors import ConfigError
from wsload.net.oauth2 import OAuth2Client, check_token_endpoint

if TYPE_CHECKING:
    from wsload.config.options import RunOptions

Get = Callable[..., Any]


def run_minter(options: RunOptions) -> TokenMinter | None:
    """The run's minter; None when tokens come from elsewhere and no key is given.

    ``mint`` needs a key (``ConfigError`` without); the other sources mint only what the
    security probes craft, and without a key those probes that need a valid signature are
    skipped. A key given but unusable is an error whatever the source.
    """
    spec = options.profile.token
    hmac = spec.algorithm.startswith("HS")
    secret = options.jwt_secret or os.environ.get(SECRET_ENV)
    given = secret if hmac else options.jwt_private_key
    if options.token_source != "mint" and not given:
        return None
    return TokenMinter(
        spec,
        secret=options.jwt_secret,
        key_file=options.jwt_private_key,
        lifetime_s=options.token_lifetime_s,
    )


def build_oauth2_client(profile: Profile, token_source: str, get: Get) -> OAuth2Client | None:
    """The token endpoint of this run, or None when the run does not use one."""
    spec = profile.oauth2
    endpoint = get("oauth2_endpoint") or spec.endpoint
    if token_source != "oauth2" and not (token_source == "file" and endpoint):
        return None
    if not endpoint:
        raise ConfigError(
            "--token-source oauth2 needs the identity provider's token endpoint",
            fix="set oauth2.endpoint in the profile or pass --oauth2-endpoint "
            "https://IDP/oauth/token",
        )
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(
            f"--oauth2-endpoint {endpoint!r} is not an http:// or https:// URL",
            fix="give the token endpoint's full URL, e.g. https://idp.example/oauth/token",
        )
    client_id = get("oauth2_client_id") or spec.client_id
    secret = get("oauth2_client_secret") or ""
    if spec.client_auth != "none" and not client_id:
        raise ConfigError(
            f"the token endpoint needs a client id (oauth2.client_auth = {spec.client_auth!r})",
            fix="set oauth2.client_id in the profile or pass --oauth2-client-id",
        )
    if spec.grant == "client_credentials" and spec.client_auth != "none" and not secret:
        raise ConfigError(
            "the client_credentials grant needs the client secret",
            fix="pass --oauth2-client-secret or set WSLOAD_OAUTH2_CLIENT_SECRET",
        )
    return OAuth2Client(endpoint, spec, client_id, secret)


def load_file_tokens(profile: Profile, token_source: str, get: Get) -> tuple[FileToken, ...]:
    """The token file's users (``--token-source file``), else nothing."""
    if token_source != "file":
        return ()
    path = get("token_file")
    if not path:
        raise ConfigError(
            "--token-source file needs --token-file",
            fix="pass --token-file tokens.txt (one user per line: ACCESS[,REFRESH] or JSON)",
        )
    return load_token_file(path, subject_claim=profile.ack.subject_claim)


def check_token_source(options: RunOptions, run_time_s: float | None) -> list[str]:
    """Before load: the token endpoint really grants a token (``ConfigError`` with the
    provider's answer if not), and what the source leaves unchecked, one warning each."""
    warnings: list[str] = []
    claim = options.profile.ack.subject_claim
    if options.token_source == "file":
        tokens = options.token_file
        can_refresh = options.oauth2 is not None or options.profile.auth.refresh != "none"
        warning = expiry_warning(tokens, run_time_s, can_refresh=can_refresh, now=time.time())
        if warning:
            warnings.append(warning)
        unknown = [t.line for t in tokens if t.subject is None]
        if unknown:
            warnings.append(
                f"{len(unknown)} of {len(tokens)} lines of the token file name no subject and "
                f"their token has no '{claim}' claim (line {unknown[0]} first): the ack of "
                "their sessions is not compared with anyone (identity_mismatch unchecked); "
                'give those lines a JSON "subject"'
            )
    elif options.token_source == "oauth2" and options.oauth2 is not None:
        first = options.credentials[0] if options.credentials else None
        answer = check_token_endpoint(
            options.oauth2,
            first.email if first else None,
            first.password if first else None,
            timeout_s=options.connect_timeout_s,
            tls=options.tls,
        )
        if claim_text(unverified_claims(answer.access_token), claim) is None:
            warnings.append(
                f"the token endpoint's access tokens carry no '{claim}' claim (not a JWT, or "
                "another claim names the user): acks are not compared with anyone "
                "(identity_mismatch unchecked); set ack.subject_claim to the claim the "
                "backend acks as"
            )
    return warnings
