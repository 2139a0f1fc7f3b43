"""Options of tokens wsload does not mint: a token file, or an identity provider's endpoint.

Used with ``--token-source file`` and ``--token-source oauth2``; the endpoint itself is
described by the profile's ``[oauth2]`` table, these override what differs per environment.
"""

from __future__ import annotations

from wsload.config.spec import OptionSpec

IDP_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "--token-file",
        "WSLOAD_TOKEN_FILE",
        "token source file: one user's pre-issued tokens per line, ACCESS[,REFRESH] or JSON "
        "{access_token, refresh_token, subject}",
        "",
    ),
    OptionSpec(
        "--oauth2-endpoint",
        "WSLOAD_OAUTH2_ENDPOINT",
        "token source oauth2: the identity provider's token endpoint URL "
        "(default: the profile's oauth2.endpoint)",
        "",
    ),
    OptionSpec(
        "--oauth2-client-id",
        "WSLOAD_OAUTH2_CLIENT_ID",
        "OAuth2 client id (default: the profile's oauth2.client_id)",
        "",
    ),
    OptionSpec(
        "--oauth2-client-secret",
        "WSLOAD_OAUTH2_CLIENT_SECRET",
        "OAuth2 client secret; never shown in the web UI, logs or results",
        secret=True,
        web_ui=False,
    ),
)
