"""A small WebSocket backend unlike the reference target (see data/other_backend.toml).

Run as ``python tests/other_backend.py``: prints ``PORT`` once listening, serves until
killed. Built on the third-party ``websockets`` library so it shares no code with wsload.
The token travels in ``Authorization: Token <jwt>``, or from a browser page in the
``access_token`` query parameter or the ``other_session`` cookie.
"""

import asyncio
import json
import os
import sys
import uuid
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import jwt
from websockets.asyncio.server import serve

SECRET = os.environ["OTHER_SECRET"]


async def handler(ws):
    if urlsplit(ws.request.path).path != "/chat/socket":
        await ws.close(4004, "not found")
        return
    auth = ws.request.headers.get("Authorization", "").removeprefix("Token ")
    if not auth:  # a browser page cannot set headers: its URL or a cookie has the token
        auth = parse_qs(urlsplit(ws.request.path).query).get("access_token", [""])[0]
    if not auth:
        cookies = SimpleCookie(ws.request.headers.get("Cookie", ""))
        auth = cookies["other_session"].value if "other_session" in cookies else ""
    try:
        claims = jwt.decode(
            auth,
            SECRET,
            algorithms=["HS256"],
            audience="other-api",
            issuer="other-issuer",
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.PyJWTError:
        await ws.send(json.dumps({"event": "denied", "reason": "bad token"}))
        await ws.close(4401, "denied")
        return
    uid = claims["sub"]
    await ws.send(json.dumps({"event": "session.ready", "session": {"uid": uid}}))
    await ws.send(json.dumps({"event": "keepalive"}))
    async for raw in ws:
        msg = json.loads(raw)
        if msg.get("action") != "ask":
            continue
        run = uuid.uuid4().hex
        base = {"uid": uid, "conversation": msg["conversation"], "run": run}
        for name in ("run.start", "run.step", "run.step", "run.output", "run.end"):
            await asyncio.sleep(0.005)
            await ws.send(json.dumps({"event": name, **base}))


async def main():
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
