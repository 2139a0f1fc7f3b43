"""Before load: does the server speak the profile's framing (Socket.IO or plain JSON)?

A Socket.IO profile pointed at a plain WebSocket server (or the reverse) would fail every
session the same way; one connection before load says so once, with the key to change.
The check carries no token: it only needs the server's first words (an Engine.IO open
packet, or JSON), which servers send before they judge credentials, and a Socket.IO server
refuses a namespace it does not serve before it looks at any token.
"""

from __future__ import annotations

from wsload import taxonomy
from wsload.config.profile import Profile
from wsload.errors import ConfigError
from wsload.net.client import ClientOptions, ConnectError, connect
from wsload.net.engineio import PollingOpenError, engineio_url, polling_open
from wsload.protocol.carrier import Placement
from wsload.protocol.socketio_names import PLAIN_JSON_HINT

CHECK = ClientOptions(connect_timeout_s=3.0, handshake_timeout_s=3.0, ack_timeout_s=3.0)


def check_framing(url: str, profile: Profile) -> None:
    """Raise ``ConfigError`` when the server at ``url`` does not speak the profile's framing."""
    if profile.transport.framing == "socketio":
        _check_socketio(url, profile)
    else:
        _check_not_socketio(url, profile)


def _check_socketio(url: str, profile: Profile) -> None:
    try:
        conn = connect(url, profile, Placement(url), options=CHECK)
    except ConnectError as err:
        if err.session is not None:
            err.session.abort()
        if PLAIN_JSON_HINT in err.detail or (
            err.phase == "connect" and err.http_status in (400, 404)
        ):
            raise ConfigError(
                f"the server at {url} does not speak Socket.IO at {profile.endpoint.path} "
                f"({err.failure}: {err.detail[:160]})",
                fix='for a plain JSON WebSocket server set transport.framing = "json"; for a '
                "Socket.IO server set endpoint.path to its Engine.IO path (Chainlit: "
                "/ws/socket.io)",
            ) from None
        if err.failure == taxonomy.NAMESPACE_REFUSED:  # refused before any token is judged
            raise ConfigError(
                f"the server at {url} refuses the profile's Socket.IO namespace: {err.detail}",
                fix="set transport.namespace to a namespace the server serves",
            ) from None
        return  # refused without a token, or a failure the run will classify: it speaks
    conn.abort()


def _check_not_socketio(url: str, profile: Profile) -> None:
    try:
        polling_open(
            engineio_url(url, "polling"), Placement(url), timeout_s=CHECK.connect_timeout_s
        )
    except PollingOpenError:
        return  # no Engine.IO there: the plain framing may be right
    raise ConfigError(
        f"the server at {url} speaks Socket.IO (Engine.IO answered at "
        f"{profile.endpoint.path}/), but the profile {profile.name!r} expects plain JSON frames",
        fix='use a Socket.IO profile (transport.framing = "socketio"; `--ws-profile chainlit` '
        "for a Chainlit app)",
    )
