"""A FastAPI backend speaking the default profile, served by uvicorn: a stack teams run.

It shares no code with wsload or its reference target. It enforces auth correctly (HS256,
issuer, audience, an error frame and close 1008 on a bad token), answers each chat message
with the default profile's agent events, and takes faults from the environment so tests can
hold wsload to servers it has never seen:

- ``LEAK_FRACTION``: share of agent events also sent to another user's open session;
- ``DUPLICATE_TERMINAL``: 1 sends every ``agent_completed`` twice, byte-identical.

Run as ``python tests/fastapi_backend.py --ws wsproto|websockets [--no-deflate]``: prints
``PORT`` once listening, serves until killed; permessage-deflate is accepted (uvicorn's
default) unless ``--no-deflate``. With ``--ws wsproto`` uvicorn accepts a malformed
``Sec-WebSocket-Key`` (lax handshake) while auth stays enforced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import time
import uuid

import jwt
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

SECRET = os.environ["BACKEND_SECRET"]
LEAK_FRACTION = float(os.environ.get("LEAK_FRACTION", "0"))
DUPLICATE_TERMINAL = os.environ.get("DUPLICATE_TERMINAL", "0") == "1"
STEPS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")

app = FastAPI()
sessions: dict[WebSocket, str] = {}
counters = {"leaked": 0, "duplicated_terminal": 0, "turns": 0}


def _offered(ws: WebSocket) -> list[str]:
    return list(ws.scope.get("subprotocols", ()))  # ASGI's list, as every server parses it


def _token(ws: WebSocket) -> str | None:
    offered = _offered(ws)
    return next((p.removeprefix("jwt-auth.") for p in offered if p.startswith("jwt-auth.")), None)


@app.get("/counters")
async def read_counters() -> dict[str, int]:
    return counters


@app.websocket("/ws")
async def chat(ws: WebSocket) -> None:
    await ws.accept(subprotocol="jwt-auth" if "jwt-auth" in _offered(ws) else None)
    try:
        claims = jwt.decode(
            _token(ws) or "",
            SECRET,
            algorithms=["HS256"],
            issuer="netra-auth-service",
            audience="netra-platform",
            options={"require": ["exp", "iat", "sub"]},
        )
        if claims.get("token_type") != "access":
            raise jwt.InvalidTokenError("not an access token")
    except jwt.PyJWTError:
        await ws.send_text(json.dumps({"type": "error_message", "error_code": "AUTH_FAILED"}))
        await ws.close(1008)
        return
    user = str(claims["sub"])
    await ws.send_text(json.dumps({"type": "connection_established", "data": {"user_id": user}}))
    sessions[ws] = user
    try:
        while True:
            message = json.loads(await ws.receive_text())
            if message.get("type") == "ping":
                await ws.send_text(json.dumps({"type": "pong"}))
            elif message.get("type") == "user_message":
                await _turn(ws, user, message["payload"]["thread_id"])
    except WebSocketDisconnect:
        pass
    finally:
        sessions.pop(ws, None)


async def _turn(ws: WebSocket, user: str, thread: str) -> None:
    run = uuid.uuid4().hex
    counters["turns"] += 1
    for name in STEPS:
        await asyncio.sleep(0.002)
        frame = json.dumps(
            {"type": name, "user_id": user, "thread_id": thread, "run_id": run, "ts": time.time()}
        )
        await ws.send_text(frame)
        if name == STEPS[-1] and DUPLICATE_TERMINAL:
            counters["duplicated_terminal"] += 1
            await ws.send_text(frame)
        others = [other for other, who in sessions.items() if who != user]
        if others and LEAK_FRACTION and random.random() < LEAK_FRACTION:
            counters["leaked"] += 1
            try:
                await random.choice(others).send_text(frame)
            except Exception:  # the other session is closing: the leak went nowhere
                counters["leaked"] -= 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ws", default="websockets", choices=("websockets", "wsproto"))
    parser.add_argument("--no-deflate", action="store_true", help="refuse permessage-deflate")
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(
        app,
        ws=args.ws,
        ws_per_message_deflate=not args.no_deflate,  # uvicorn's default: accept the offer
        log_level="warning",
        lifespan="off",
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
