"""Stable failure identifiers shared by stats, raw samples, gates and reports.

They never change meaning once released: dashboards, gates and notebooks group by them.
Parameterised ids (``http_<status>``, ``closed_<code>``, ``disconnected_<code>``) are built
by the helpers below so that spelling stays in one place.
"""

from __future__ import annotations

# connect: TCP connect start to a valid HTTP 101
REFUSED = "refused"
DNS = "dns"
UNREACHABLE = "unreachable"
TCP_TIMEOUT = "tcp_timeout"
TLS = "tls"
HANDSHAKE_TIMEOUT = "handshake_timeout"
INVALID_HTTP = "invalid_http"
RESET = "reset"

# why a ``tls`` failure happened: the first words of its detail ("unknown CA: ...")
TLS_UNKNOWN_CA = "unknown CA"  # the certificate's issuer is not trusted (--tls-ca)
TLS_EXPIRED = "expired"
TLS_NOT_YET_VALID = "not yet valid"
TLS_WRONG_HOST = "wrong host"  # the certificate does not name the host connected to
TLS_CLIENT_CERT = "client certificate"  # the server wanted one (mTLS) or refused ours
TLS_NOT_TLS = "not TLS"  # the server answered in plain text
TLS_HANDSHAKE = "handshake"  # any other handshake failure
TLS_REASONS = (
    TLS_UNKNOWN_CA,
    TLS_EXPIRED,
    TLS_NOT_YET_VALID,
    TLS_WRONG_HOST,
    TLS_CLIENT_CERT,
    TLS_NOT_TLS,
    TLS_HANDSHAKE,
)

# auth: HTTP 101 to the ack frame
AUTH_REJECTED = "auth_rejected"
AUTH_TIMEOUT = "auth_timeout"
IDENTITY_MISMATCH = "identity_mismatch"
AUTH_MATERIAL_MISSING = "auth_material_missing"

# turn
EVENT_TIMEOUT = "event_timeout"
SEQUENCE_MISSING = "sequence_missing"
SEQUENCE_ORDER = "sequence_order"
SEQUENCE_DUPLICATE = "sequence_duplicate"
AGENT_ERROR = "agent_error"
FOREIGN_EVENT = "foreign_event"
PROTOCOL_ERROR = "protocol_error"
SERVER_ERROR = "server_error"  # an error frame from the server in the middle of a session

# security
AUTH_NOT_ENFORCED = "auth_not_enforced"

# handshake conformance: the server accepted an upgrade RFC 6455 says to refuse (a
# malformed Sec-WebSocket-Key, a plain GET). Not an auth finding: those probes carry a
# valid token or none is needed to answer them.
HANDSHAKE_NOT_CONFORMANT = "handshake_not_conformant"

CONNECT_FAILURES = frozenset(
    {REFUSED, DNS, UNREACHABLE, TCP_TIMEOUT, TLS, HANDSHAKE_TIMEOUT, INVALID_HTTP, RESET}
)


def http_status(status: int) -> str:
    """The id of an upgrade answered with another HTTP status than 101."""
    return f"http_{status}"


def closed(code: int | None) -> str:
    """The id of a close before the ack; 1006 when the peer vanished without a close frame."""
    return f"closed_{code if code is not None else 1006}"


def disconnected(code: int | None) -> str:
    """The id of a close in the middle of a turn."""
    return f"disconnected_{code if code is not None else 1006}"
