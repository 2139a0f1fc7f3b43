"""A Socket.IO chat backend on python-socketio (aiohttp), shaped like a Chainlit app.

Engine.IO path ``/ws/socket.io``; the JWT travels in the CONNECT packet's auth payload
(``{"token": ...}``); a chat message is the event ``client_message`` with
``{"content", "thread_id"}``; each is answered on the same socket by ``task_start``,
``stream_start``, ``stream_token`` per word, ``new_message`` and ``task_end``. A bad token
refuses the CONNECT (a CONNECT_ERROR packet).

Run as ``python tests/har_socketio_backend.py``: prints ``PORT`` once listening, serves until
killed. Built on python-socketio so it shares no code with wsload.
"""

import asyncio
import os
import socket
import uuid

import jwt
import socketio
from aiohttp import web

SECRET = os.environ["SOCKETIO_SECRET"]
sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
app = web.Application()
sio.attach(app, socketio_path="/ws/socket.io")
users: dict[str, str] = {}


@sio.event
async def connect(sid, environ, auth):
    try:
        claims = jwt.decode(
            (auth or {}).get("token", ""),
            SECRET,
            algorithms=["HS256"],
            audience="chat-app",
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.PyJWTError as error:
        raise socketio.exceptions.ConnectionRefusedError("authentication failed") from error
    users[sid] = str(claims["sub"])


@sio.event
async def disconnect(sid, *args):
    users.pop(sid, None)


@sio.on("client_message")
async def client_message(sid, data):
    thread = data["thread_id"]
    run = uuid.uuid4().hex
    base = {"threadId": thread, "runId": run, "userId": users.get(sid)}
    await sio.emit("task_start", {**base}, to=sid)
    await sio.emit("stream_start", {**base, "id": run}, to=sid)
    words = f"You said: {data['content']}".split()
    for word in words:
        await asyncio.sleep(0.003)
        await sio.emit("stream_token", {**base, "id": run, "token": word + " "}, to=sid)
    await sio.emit("new_message", {**base, "output": " ".join(words)}, to=sid)
    await sio.emit("task_end", {**base}, to=sid)


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    web.run_app(app, sock=sock, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
