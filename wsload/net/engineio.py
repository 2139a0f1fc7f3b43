"""The Engine.IO side of a Socket.IO connection: its URL and the HTTP long-polling open.

Engine.IO servers take a WebSocket straight at ``<path>/?EIO=4&transport=websocket``;
browsers first open a long-polling session over HTTP (``GET ...&transport=polling``, whose
answer is the open packet ``0{sid,...}``) and then upgrade it to a WebSocket carrying the
``sid`` (``2probe``, ``3probe``, ``5``). ``socketio_codec`` does either as the profile's
``transport.open`` says and returns the codec, the URL and the cookies of the WebSocket.
The probe itself is the codec's (``wsload.protocol.socketio``); this module does the HTTP.
"""

from __future__ import annotations

import http.client
import ssl
import time
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from wsload import taxonomy
from wsload.config.profile import Profile
from wsload.protocol.carrier import Placement, with_query

if TYPE_CHECKING:
    from wsload.protocol.socketio import SocketIOCodec


class PollingOpenError(Exception):
    """The long-polling open failed; ``failure`` is the taxonomy id."""

    def __init__(self, failure: str, detail: str, status: int | None = None) -> None:
        self.failure = failure
        self.detail = detail
        self.status = status
        super().__init__(detail)


def engineio_url(url: str, transport: str, sid: str | None = None) -> str:
    """``url`` (the Engine.IO path, any query kept) as Engine.IO v4 wants it."""
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    url = urlunsplit(parts._replace(path=path))
    url = with_query(url, "EIO", "4")
    url = with_query(url, "transport", transport)
    return with_query(url, "sid", sid) if sid else url


def socketio_codec(
    profile: Profile,
    placement: Placement,
    *,
    subject: str = "",
    timeout_s: float = 10.0,
    origin: str = "",
    user_agent: str = "",
    tls_verify: bool = True,
) -> tuple[SocketIOCodec, str, tuple[tuple[str, str], ...]]:
    """The codec of one Socket.IO session, the WebSocket URL and cookies to upgrade with.

    With ``transport.open = "polling"`` the Engine.IO session is opened over HTTP first
    (``PollingOpenError`` when that fails); cookies it sets go with the upgrade.
    """
    # the codec loads python-engineio and python-socketio: only a Socket.IO session does
    from wsload.protocol.socketio import SocketIOCodec, connect_auth, settings_for

    codec_auth = connect_auth(profile, placement.token, subject)
    settings = settings_for(profile)
    if profile.transport.open != "polling":
        url = engineio_url(placement.url, "websocket")
        return SocketIOCodec(settings, codec_auth), url, placement.cookies
    opened, cookies = polling_open(
        engineio_url(placement.url, "polling"),
        placement,
        timeout_s=timeout_s,
        origin=origin,
        user_agent=user_agent,
        tls_verify=tls_verify,
    )
    url = engineio_url(placement.url, "websocket", str(opened["sid"]))
    codec = SocketIOCodec(settings, codec_auth, open_packet=opened)
    return codec, url, (*placement.cookies, *cookies)


def polling_open(
    ws_url: str,
    placement: Placement,
    *,
    timeout_s: float,
    origin: str = "",
    user_agent: str = "",
    tls_verify: bool = True,
) -> tuple[dict, tuple[tuple[str, str], ...]]:
    """GET the long-polling open; its open packet and the cookies the answer sets."""
    parts = urlsplit(ws_url)
    secure = parts.scheme in ("wss", "https")
    port = parts.port or (443 if secure else 80)
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    target = with_query(target, "t", format(time.time_ns() // 1_000_000, "x"))
    headers = {"Accept": "*/*"}
    if origin:
        headers["Origin"] = origin
    if user_agent:
        headers["User-Agent"] = user_agent
    headers.update(placement.headers)
    if placement.cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in placement.cookies)
    if secure:
        context = ssl.create_default_context()
        if not tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout_s, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        body = response.read(64 * 1024).decode("utf-8", "replace")
        set_cookies = response.headers.get_all("Set-Cookie") or []
        status = response.status
    except TimeoutError:
        raise PollingOpenError(
            taxonomy.HANDSHAKE_TIMEOUT, "no answer to the polling open"
        ) from None
    except ConnectionRefusedError:
        raise PollingOpenError(taxonomy.REFUSED, f"nothing listens at {host}:{port}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise PollingOpenError(taxonomy.RESET, f"polling open: {type(exc).__name__}") from None
    finally:
        conn.close()
    if status != 200:
        raise PollingOpenError(
            taxonomy.http_status(status),
            f"the Engine.IO polling open {parts.path} answered HTTP {status}: "
            + ("not an Engine.IO endpoint (check endpoint.path)" if status == 404 else body[:80]),
            status,
        )
    opened = open_packet(body)
    if opened is None:
        raise PollingOpenError(
            taxonomy.INVALID_HTTP,
            f"the polling open at {parts.path} answered no Engine.IO open packet "
            f"({body[:40]!r}): not a Socket.IO server, or not Engine.IO v4",
        )
    cookies: list[tuple[str, str]] = []
    for line in set_cookies:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(line)
        except Exception:
            continue
        cookies += ((name, morsel.value) for name, morsel in jar.items())
    return opened, tuple(cookies)


def open_packet(body: str) -> dict | None:
    """The open packet (its object) at the start of a polling answer, else None."""
    if not body.startswith("0{"):
        return None  # no Engine.IO (a 404 page, say): no need to load the library
    import engineio.packet as eio
    import engineio.payload as eio_payload

    try:
        packets = eio_payload.Payload(encoded_payload=body).packets
    except (ValueError, IndexError, TypeError):
        return None
    if not packets or packets[0].packet_type != eio.OPEN:
        return None
    data = packets[0].data
    return data if isinstance(data, dict) and "sid" in data else None
