"""A python-socketio chat backend served by uvicorn: Socket.IO as teams run it.

It shares no code with wsload. It serves only the namespace ``/chat`` (a CONNECT to any
other is refused by python-socketio itself), takes the JWT from the CONNECT auth payload
(``{"token": ...}``), the ``access_token`` cookie, the ``token`` query parameter or an
``Authorization: Bearer`` header, checks it (HS256, the default profile's issuer and
audience) and refuses a bad one with ``ConnectionRefusedError`` (a ``44`` packet). An
accepted session gets the event ``session`` naming its user; each ``client_message``
is answered, in the default profile's event names, with ``agent_started``, a tool step
(``tool_executing`` .. ``tool_completed`` after ``TOOL_MS``), ``STREAM_CHUNKS``
``stream_chunk`` events ``CHUNK_MS`` apart, and ``agent_completed``.

Run as ``python tests/socketio_backend.py``: prints ``PORT`` once listening, serves until
killed. ``PING_INTERVAL`` (seconds) sets Engine.IO's ping interval.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

import jwt
import socketio
import uvicorn

SECRET = os.environ["BACKEND_SECRET"]
TOOL_MS = float(os.environ.get("TOOL_MS", "40"))
CHUNK_MS = float(os.environ.get("CHUNK_MS", "10"))
STREAM_CHUNKS = int(os.environ.get("STREAM_CHUNKS", "3"))
PING_INTERVAL = float(os.environ.get("PING_INTERVAL", "25"))
NAMESPACE = "/chat"

sio = socketio.AsyncServer(
    async_mode="asgi", ping_interval=PING_INTERVAL, ping_timeout=5, cors_allowed_origins="*"
)
app = socketio.ASGIApp(sio, socketio_path="socket.io")
users: dict[str, str] = {}


def _token(environ: dict, auth: object) -> str | None:
    if isinstance(auth, dict) and auth.get("token"):
        return str(auth["token"])
    cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    if "access_token" in cookies:
        return cookies["access_token"].value
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if query.get("token"):
        return query["token"][0]
    header = environ.get("HTTP_AUTHORIZATION", "")
    return header[7:] if header.startswith("Bearer ") else None


@sio.on("connect", namespace=NAMESPACE)
async def connect(sid: str, environ: dict, auth: object = None) -> None:
    token = _token(environ, auth)
    if not token:
        raise socketio.exceptions.ConnectionRefusedError("authentication failed: no token")
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            audience="netra-platform",
            issuer="netra-auth-service",
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise socketio.exceptions.ConnectionRefusedError(
            f"authentication failed: {type(exc).__name__}"
        ) from None
    users[sid] = claims["sub"]
    await sio.emit("session", {"user_id": claims["sub"]}, to=sid, namespace=NAMESPACE)


@sio.on("disconnect", namespace=NAMESPACE)
async def disconnect(sid: str, *_: object) -> None:
    users.pop(sid, None)


@sio.on("client_message", namespace=NAMESPACE)
async def client_message(sid: str, data: dict) -> None:
    user = users.get(sid, "")
    thread = str(data.get("thread_id") or "t")
    run = f"run-{uuid.uuid4().hex[:12]}"

    async def emit(name: str, after_ms: float = 0.0, **extra: object) -> None:
        if after_ms:
            await asyncio.sleep(after_ms / 1000.0)
        body = {"user_id": user, "thread_id": thread, "run_id": run, "ts": time.time(), **extra}
        await sio.emit(name, body, to=sid, namespace=NAMESPACE)

    await emit("agent_started")
    await emit("agent_thinking")
    await emit("tool_executing")
    await emit("tool_completed", TOOL_MS)
    for i in range(STREAM_CHUNKS):
        await emit("stream_chunk", CHUNK_MS, data={"content": f"tok{i} "})
    await emit("agent_completed")


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
