"""TLS of ``wss://`` sessions as a browser does it: verified, with SNI and ALPN, resumed.

Staging and production serve ``wss://``, often with a private CA. This module makes the
client's TLS context (``--tls-ca``, ``--tls-insecure``, a client certificate for mTLS),
shakes hands the way Chromium does (SNI for a host name and none for an IP literal, ALPN
``http/1.1``: a WebSocket upgrade is HTTP/1.1), resumes a user's previous TLS session on
its reconnects where the server allows (a browser keeps one per host), and says why a
handshake failed in the words of the taxonomy (unknown CA, expired, wrong host, ...).
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from wsload import taxonomy
from wsload.errors import ConfigError
from wsload.protocol.upgrade import Endpoint

ALPN = ("http/1.1",)  # what Chromium offers on a WebSocket's connection


@dataclass(frozen=True)
class TlsSettings:
    """How the client checks servers and proves itself: one per run, shared by sessions."""

    ca_file: str | None = None  # PEM bundle trusted besides the system's CAs
    insecure: bool = False  # no certificate or host check at all (marked in run.json)
    client_cert: str | None = None  # PEM certificate (chain) for mTLS
    client_key: str | None = None  # its key; None: in the certificate file


DEFAULT_TLS = TlsSettings()  # the system's CAs, verified, no client certificate


class TlsResume:
    """One user's TLS session, offered again on its next connection to the same host."""

    __slots__ = ("host", "session")

    def __init__(self) -> None:
        self.host: tuple[str, int] | None = None
        self.session: ssl.SSLSession | None = None

    def remember(self, sock: Any, endpoint: Endpoint) -> None:
        """Keep the connection's session (call once data was read: TLS 1.3 tickets come
        after the handshake)."""
        session = getattr(sock, "session", None)
        if session is not None and (session.has_ticket or session.id):
            self.host = (endpoint.host, endpoint.port)
            self.session = session


def check_settings(settings: TlsSettings) -> None:
    """Fail before load, naming the option, when a TLS file cannot be used."""
    for option, path in (
        ("--tls-ca", settings.ca_file),
        ("--tls-client-cert", settings.client_cert),
        ("--tls-client-key", settings.client_key),
    ):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{option} {path}: no such file", fix=f"give {option} a PEM file")
    if settings.client_key and not settings.client_cert:
        raise ConfigError(
            "--tls-client-key without --tls-client-cert", fix="add --tls-client-cert FILE"
        )
    client_context(settings)


@functools.lru_cache(maxsize=8)
def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context of every ``wss://`` connection with these settings (made once: a
    context per connection would cost a CA bundle load each)."""
    return new_client_context(settings)


def https_options(settings: TlsSettings) -> dict[str, Any]:
    """Keyword arguments of Locust's ``FastHttpSession`` for the run's HTTP requests (login,
    refresh, ticket) to check the server as the WebSocket sessions do (its own default
    verifies nothing)."""
    return {
        "insecure": settings.insecure,
        "ssl_context_factory": lambda *_, **__: new_client_context(settings),
    }


def new_client_context(settings: TlsSettings) -> ssl.SSLContext:
    """A fresh client context for ``settings``: ALPN ``http/1.1``, TLS 1.2 or later."""
    context = ssl.create_default_context()  # the system's CAs, as a browser trusts them
    try:
        if settings.ca_file:  # and a private CA beside them, as one installed in a browser
            context.load_verify_locations(cafile=settings.ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"--tls-ca {settings.ca_file}: not a PEM CA bundle ({exc})",
            fix="give --tls-ca the CA certificate(s) in PEM",
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(ALPN))
    if settings.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.client_cert:
        try:
            context.load_cert_chain(settings.client_cert, settings.client_key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"--tls-client-cert {settings.client_cert}: cannot load it ({exc})",
                fix="give a PEM certificate and its key (--tls-client-key if separate)",
            ) from None
    return context


def handshake(
    sock: socket.socket, endpoint: Endpoint, settings: TlsSettings, resume: TlsResume | None
) -> ssl.SSLSocket:
    """Shake hands on a connected socket; offers ``resume``'s session for the same host."""
    session = None
    if resume is not None and resume.host == (endpoint.host, endpoint.port):
        session = resume.session
    # server_hostname is the SNI for a name; for an IP literal Python, as Chromium, sends
    # none and checks the certificate's IP address entries instead
    return client_context(settings).wrap_socket(
        sock, server_hostname=endpoint.host, session=session
    )


def server_context(cert: str, key: str | None, client_ca: str | None) -> ssl.SSLContext:
    """A server's context (the reference target's ``--tls-cert``): ALPN ``http/1.1``,
    session tickets on (clients may resume), client certificates required when
    ``client_ca`` is given (mTLS). ``ConfigError`` naming the option when a file is bad."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(ALPN))
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"--tls-cert {cert}: cannot load it with its key ({exc})",
            fix="give --tls-cert a PEM certificate and --tls-key its PEM key",
        ) from None
    if client_ca:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"--tls-client-ca {client_ca}: not a PEM CA bundle ({exc})",
                fix="give --tls-client-ca the CA that signs client certificates, in PEM",
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


# why a handshake failed --------------------------------------------------------------
# OpenSSL's X509_V_ERR_* codes of a failed verification, by the reason the taxonomy names
_VERIFY_REASONS = {
    18: taxonomy.TLS_UNKNOWN_CA,  # self-signed leaf
    19: taxonomy.TLS_UNKNOWN_CA,  # self-signed CA in the chain
    20: taxonomy.TLS_UNKNOWN_CA,  # issuer not found locally
    21: taxonomy.TLS_UNKNOWN_CA,  # cannot verify the first certificate
    2: taxonomy.TLS_UNKNOWN_CA,  # issuer certificate not found
    9: taxonomy.TLS_NOT_YET_VALID,
    10: taxonomy.TLS_EXPIRED,
    62: taxonomy.TLS_WRONG_HOST,  # hostname mismatch
    64: taxonomy.TLS_WRONG_HOST,  # IP address mismatch
}
_FIXES = {
    taxonomy.TLS_UNKNOWN_CA: "pass --tls-ca FILE with the CA that signed the server's "
    "certificate (or, for a throwaway check only, --tls-insecure)",
    taxonomy.TLS_EXPIRED: "renew the server's certificate (or check this machine's clock)",
    taxonomy.TLS_NOT_YET_VALID: "check this machine's clock and the certificate's dates",
    taxonomy.TLS_WRONG_HOST: "connect by a name the certificate lists (--host), or reissue it "
    "for this host",
    taxonomy.TLS_CLIENT_CERT: "pass --tls-client-cert FILE (and --tls-client-key) with a "
    "certificate the server's CA signed",
    taxonomy.TLS_NOT_TLS: "the server speaks plain HTTP here: use ws:// or the TLS port",
    taxonomy.TLS_HANDSHAKE: "check the server's TLS configuration (versions, ciphers, ALPN)",
}


def failure_reason(exc: BaseException) -> str:
    """The taxonomy's reason for a TLS failure (``taxonomy.TLS_REASONS``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_REASONS.get(exc.verify_code, taxonomy.TLS_HANDSHAKE)
    text = str(exc).lower()
    if "certificate required" in text or ("unknown ca" in text and "alert" in text):
        return taxonomy.TLS_CLIENT_CERT
    if "bad certificate" in text or "certificate_required" in text:
        return taxonomy.TLS_CLIENT_CERT
    if "wrong version number" in text or "record layer failure" in text:
        return taxonomy.TLS_NOT_TLS
    return taxonomy.TLS_HANDSHAKE


def describe_failure(exc: BaseException, endpoint: Endpoint) -> str:
    """A TLS failure as its reason first, then what OpenSSL said, then where."""
    reason = failure_reason(exc)
    said = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
    return f"{reason}: {said} ({endpoint.host}:{endpoint.port})"


def closed_after_handshake(endpoint: Endpoint) -> str:
    """The detail of a server that closed right after a TLS handshake, without a word.

    A server that requires a client certificate (or refuses the one given) finds out after
    a TLS 1.3 client's handshake is done; servers on asyncio then close without sending
    the alert, so this silence is how a missing or refused client certificate shows.
    """
    return (
        f"{taxonomy.TLS_CLIENT_CERT}: the server closed the connection right after the TLS "
        "handshake without answering the upgrade, as a server that requires a client "
        f"certificate (or refuses the one given) does ({endpoint.host}:{endpoint.port})"
    )


def preflight_error(exc: BaseException, url: str, endpoint: Endpoint) -> ConfigError:
    """The one message before load for a target whose TLS handshake fails."""
    reason = failure_reason(exc)
    return ConfigError(
        f"TLS handshake with {url} failed: {describe_failure(exc, endpoint)}",
        fix=_FIXES[reason],
    )
