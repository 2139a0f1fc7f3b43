"""A Chainlit app with known delays, run by the tests with ``chainlit run``.

Password auth (any user name, the password in ``APP_PASSWORD``); each message gets a tool
step of ``TOOL_MS``, then an answer streamed as ``TOKENS`` tokens ``TOKEN_MS`` apart (the
first after ``TOKEN_MS`` too), then the answer message. The delays are what wsload's
``turn:tool`` and turn times must find.
"""

from __future__ import annotations

import asyncio
import os

import chainlit as cl

TOOL_S = float(os.environ.get("TOOL_MS", "60")) / 1000.0
TOKEN_S = float(os.environ.get("TOKEN_MS", "15")) / 1000.0
TOKENS = int(os.environ.get("TOKENS", "5"))


@cl.password_auth_callback
def password_auth(username: str, password: str) -> cl.User | None:
    if password != os.environ["APP_PASSWORD"]:
        return None
    return cl.User(identifier=username, metadata={"role": "user", "provider": "credentials"})


@cl.on_message
async def on_message(message: cl.Message) -> None:
    async with cl.Step(name="lookup", type="tool") as step:
        await asyncio.sleep(TOOL_S)
        step.output = f"found {len(message.content)} characters"
    answer = cl.Message(content="")
    for i in range(TOKENS):
        await asyncio.sleep(TOKEN_S)
        await answer.stream_token(f"tok{i} ")
    await answer.send()
