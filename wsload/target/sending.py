"""How the target sends: JSON frames, a turn on the plain path or with its faults, leaks
and hostile frames, and heartbeats. With every fault knob off a turn takes the plain path,
which checks no knob per event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import web

from wsload.target.agent import (
    EncodedEvent,
    hostile_frames,
    render,
)
from wsload.target.policy import (
    COUNT,
    DROP,
    DUPLICATE,
    TurnPlan,
)
from wsload.target.state import Conn, Counters, TargetState

LEAK_TRIES = 4


encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def json_frame(kind: str, **fields: Any) -> str:
    return encode_json({"type": kind, **fields, "timestamp": time.time()})


def error_frame(code: str, message: str, **fields: Any) -> str:
    return json_frame("error_message", error_code=code, error_message=message, **fields)


async def send_plain(
    ws: web.WebSocketResponse,
    counters: Counters,
    events: tuple[EncodedEvent, ...],
    ids: str,
    t0: float,
) -> None:
    """Send each event at its absolute offset from message receipt (no drift from sleeps).

    The path of a target without fault knobs: nothing is checked per event.
    """
    loop = asyncio.get_running_loop()
    counters.active_turns += 1
    done = False
    try:
        for event in events:
            delay = t0 + event.offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send_str(render(event, time.time(), ids))
            counters.events_sent += 1
        done = True
        counters.turns_completed += 1
    except ConnectionError:
        pass  # closed mid-turn; the connection's own handler winds down
    finally:
        counters.active_turns -= 1
        if not done:
            counters.turns_aborted += 1


async def send_turn(conn: Conn, state: TargetState, turn: TurnPlan, ids: str, t0: float) -> None:
    """``send_plain`` with the policy's faults, leaks, overload and half-open carried out."""
    loop = asyncio.get_running_loop()
    ws = conn.ws
    counters = state.counters
    policy = state.policy
    leak = policy.leak_fraction
    capacity = policy.capacity
    after = turn.after
    extra = 0.0
    counters.active_turns += 1
    if capacity and counters.active_turns > capacity:
        counters.overloaded_turns += 1
    done = False
    try:
        for index, event in enumerate(turn.events):
            delay = t0 + event.offset + extra - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if capacity:  # the delay just ended: stretch it by the load at this moment
                over = policy.overload_s(counters.active_turns)
                if over:
                    extra += over
                    await asyncio.sleep(over)
            if conn.half_open:
                return
            text = render(event, time.time(), ids)
            await ws.send_str(text)
            counters.events_sent += 1
            if leak and policy.leak():
                await _leak(state, conn, text)
            actions = after.get(index) if after is not None else None
            if actions is None:
                continue
            for action, arg in actions:
                if action == COUNT:
                    setattr(counters, arg, getattr(counters, arg) + 1)
                elif action == DUPLICATE:  # arg: which counter (mid-turn or terminal)
                    await ws.send_str(text)
                    counters.events_sent += 1
                    setattr(counters, arg, getattr(counters, arg) + 1)
                elif action == DROP:
                    if conn.transport is not None and not conn.transport.is_closing():
                        counters.dropped_connections += 1
                        conn.transport.abort()  # no close frame; the reader sees it go
                    return
                else:  # HOSTILE
                    await _send_hostile(ws, counters, arg, ids)
        done = True
        if not turn.errored:
            counters.turns_completed += 1
    except ConnectionError:
        pass  # closed mid-turn; the connection's own handler winds down
    finally:
        counters.active_turns -= 1
        if not done:
            counters.turns_aborted += 1


async def _send_hostile(ws: web.WebSocketResponse, counters: Counters, kind: str, ids: str) -> None:
    for frame in hostile_frames(kind, time.time(), ids):
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
    counters.hostile_frames[kind] += 1


async def _leak(state: TargetState, sender: Conn, text: str) -> None:
    """Send a copy of ``text`` (the sender's ids kept) to another user's open session."""
    other = _leak_target(state, sender)
    if other is None:
        state.counters.leak_no_target += 1
        return
    try:
        await other.ws.send_str(text)
    except ConnectionError:
        state.counters.leak_no_target += 1
        return
    state.counters.leaked_events += 1


def _leak_target(state: TargetState, sender: Conn) -> Conn | None:
    conns = state.open
    count = len(conns)
    if count < 2:
        return None
    pick = state.policy.pick

    def fits(conn: Conn) -> bool:
        return conn.user_id != sender.user_id and not conn.half_open and not conn.ws.closed

    for _ in range(LEAK_TRIES):
        conn = conns[pick(count)]
        if fits(conn):
            return conn
    start = pick(count)  # mostly one user's sessions: look at each once
    return next(
        (conns[(start + i) % count] for i in range(count) if fits(conns[(start + i) % count])),
        None,
    )


def start_heartbeat(conn: Conn, interval: float) -> asyncio.Task[None] | None:
    if interval <= 0:
        return None
    return asyncio.get_running_loop().create_task(_heartbeat(conn, interval))


async def _heartbeat(conn: Conn, interval: float) -> None:
    """Server heartbeats at a fixed interval, as the backend sends when a client is idle."""
    ws = conn.ws
    with contextlib.suppress(ConnectionError):
        while not ws.closed and not conn.half_open:
            await asyncio.sleep(interval)
            if not conn.half_open:
                await ws.send_str(json_frame("heartbeat"))
