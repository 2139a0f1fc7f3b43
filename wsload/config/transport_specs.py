"""The options of how sessions travel: permessage-deflate and ``wss://`` (TLS).

Declarations (``OptionSpec`` rows, registered with the run's other options) and their
parsing into what the client uses: the compression mode and the ``TlsSettings``. A TLS file
that cannot be used stops the run before load with the option's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wsload.config.profile import COMPRESSIONS, Profile
from wsload.config.spec import OptionSpec
from wsload.net.tls import TlsSettings, check_settings

TLS = "TLS (wss://)"

TRANSPORT_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "--compression",
        "WSLOAD_COMPRESSION",
        "permessage-deflate: browser offers it as Chromium does (the server decides), off "
        "offers none (default: the profile's endpoint.compression)",
        choices=COMPRESSIONS,
    ),
    OptionSpec(
        "--tls-ca",
        "WSLOAD_TLS_CA",
        "PEM file of the CA(s) that sign the server's certificate (a private CA), trusted "
        "besides the system's",
        section=TLS,
        metavar="FILE",
    ),
    OptionSpec(
        "--tls-insecure",
        "WSLOAD_TLS_INSECURE",
        "do NOT verify the server's certificate or host name (marked in run.json and the "
        "summary); for a throwaway check only",
        default=False,
        action="store_true",
        section=TLS,
    ),
    OptionSpec(
        "--tls-client-cert",
        "WSLOAD_TLS_CLIENT_CERT",
        "PEM client certificate for servers that require one (mTLS)",
        section=TLS,
        metavar="FILE",
    ),
    OptionSpec(
        "--tls-client-key",
        "WSLOAD_TLS_CLIENT_KEY",
        "PEM key of --tls-client-cert (unless in that file)",
        section=TLS,
        metavar="FILE",
    ),
)


def transport_settings(get: Callable[..., Any], profile: Profile) -> tuple[str, TlsSettings]:
    """The compression mode and the checked TLS settings of a run."""
    compression = get("compression") or profile.endpoint.compression
    settings = TlsSettings(
        ca_file=get("tls_ca") or None,
        insecure=bool(get("tls_insecure")),
        client_cert=get("tls_client_cert") or None,
        client_key=get("tls_client_key") or None,
    )
    check_settings(settings)
    return compression, settings
