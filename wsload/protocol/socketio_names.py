"""Socket.IO names the session needs without loading the Socket.IO libraries.

The codec (``wsload.protocol.socketio``) imports python-engineio and python-socketio, which
pull in aiohttp and requests: a process that speaks plain JSON never loads them, so what the
session and the checks need to know about Socket.IO lives here.
"""

from __future__ import annotations

from typing import Any

from wsload import taxonomy
from wsload.config.profile import Profile

CONNECT_EVENT = "connect"  # the CONNECT ack, as an event type (what the profile's ack matches)
CONNECT_ERROR_EVENT = "connect_error"  # a CONNECT refused: a rejection
PLAIN_JSON_HINT = (
    "JSON text where Engine.IO packets were expected: the server does not speak Socket.IO; "
    'set transport.framing = "json" (or point --host at its Socket.IO endpoint)'
)
# What Socket.IO servers answer a CONNECT to a namespace they do not serve (python-socketio,
# the JavaScript server): a configuration error, not an authentication answer.
NAMESPACE_REFUSALS = frozenset({"Unable to connect", "Invalid namespace"})


def connect_refusal(profile: Profile, event: dict[str, Any]) -> tuple[str, str, str]:
    """The failure id, detail and error code of a CONNECT refused with ``event`` (44)."""
    message = event.get("message")
    text = str(message)[:200] if message is not None else "no message"
    namespace = profile.transport.namespace
    if text in NAMESPACE_REFUSALS:
        detail = (
            f"the server does not serve the Socket.IO namespace {namespace!r} ({text}); "
            "set transport.namespace to one it serves"
        )
        return taxonomy.NAMESPACE_REFUSED, detail, text[:60]
    return taxonomy.AUTH_REJECTED, f"CONNECT to {namespace} refused: {text}", text[:60]
