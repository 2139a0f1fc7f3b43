"""Where the token travels in the upgrade, as a profile's ``[auth]`` section says.

Browsers cannot set ``Authorization`` on a WebSocket, so the browser-like carriers are the
subprotocol list, the query string, a cookie, or a short-lived ticket. ``place`` decides
the request; ``missing_from`` re-reads the bytes that were really sent and says what is
not there, the check that catches a client stack silently dropping auth headers.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from wsload.config.profile import Auth
from wsload.protocol.upgrade import parse_head


@dataclass(frozen=True)
class Placement:
    """The parts of an upgrade request that carry the credential."""

    url: str
    subprotocols: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    cookies: tuple[tuple[str, str], ...] = ()
    carrier: str = "none"
    material: str = ""  # the exact text that must appear in the request
    token: str | None = None  # the token itself: a Socket.IO CONNECT payload's "{token}"


def with_query(url: str, name: str, value: str) -> str:
    """``url`` with one more query parameter."""
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode({name: value})
    return urlunsplit(parts._replace(query=query))


def encode_subprotocol_token(token: str, encoding: str) -> str:
    if encoding == "base64url":
        return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return token


def place(
    auth: Auth,
    url: str,
    token: str | None,
    *,
    ticket: str | None = None,
    carrier: str | None = None,
) -> Placement:
    """Put ``token`` (or ``ticket``) where ``carrier`` (default: the profile's) says."""
    carrier = carrier or auth.carrier
    if carrier == "ticket" or ticket is not None:
        if ticket is None:
            raise ValueError("the ticket carrier needs a ticket fetched from the ticket endpoint")
        return Placement(
            with_query(url, auth.ticket_param, ticket),
            subprotocols=(auth.subprotocol,) if auth.subprotocol else (),
            carrier="ticket",
            material=ticket,
        )
    if token is None:
        return Placement(url)
    if carrier == "connect":  # in the Socket.IO CONNECT packet (transport.connect_auth)
        return Placement(url, carrier=carrier, material=token, token=token)
    if carrier == "subprotocol":
        entry = auth.subprotocol_token_prefix + encode_subprotocol_token(
            token, auth.subprotocol_token_encoding
        )
        offered = (auth.subprotocol, entry) if auth.subprotocol else (entry,)
        return Placement(url, subprotocols=offered, carrier=carrier, material=entry, token=token)
    if carrier == "header":
        value = auth.header_format.format(token=token)
        return Placement(
            url, headers=((auth.header_name, value),), carrier=carrier, material=value, token=token
        )
    if carrier == "query":
        return Placement(
            with_query(url, auth.query_param, token), carrier=carrier, material=token, token=token
        )
    if carrier == "cookie":
        return Placement(
            url, cookies=((auth.cookie_name, token),), carrier=carrier, material=token, token=token
        )
    raise ValueError(f"unknown token carrier {carrier!r}")


def missing_from(placement: Placement, auth: Auth, sent: bytes) -> str | None:
    """Why the sent request head lacks the credential, or None when it carries it."""
    if placement.carrier in ("none", "connect"):  # connect: in the CONNECT packet, not here
        return None
    head = parse_head(sent)
    target = head.start[1]
    if placement.carrier == "subprotocol":
        offered = [p.strip() for p in (head.header("sec-websocket-protocol") or "").split(",")]
        if placement.material not in offered:
            return "the token entry is not in the Sec-WebSocket-Protocol header sent"
        return None
    if placement.carrier == "header":
        if head.header(auth.header_name) != placement.material:
            return f"the {auth.header_name} header sent does not carry the token"
        return None
    if placement.carrier == "cookie":
        cookies = dict(
            c.strip().split("=", 1) for c in (head.header("cookie") or "").split(";") if "=" in c
        )
        if cookies.get(auth.cookie_name) != placement.material:
            return f"the Cookie header sent has no {auth.cookie_name} with the token"
        return None
    param = auth.ticket_param if placement.carrier == "ticket" else auth.query_param
    values = parse_qs(urlsplit(target).query).get(param, [])
    if placement.material not in values:
        return f"the request target sent has no {param}= parameter with the credential"
    return None
