"""How much one reference-target process sustains: handshakes/s and turns/s.

    .venv/bin/python benchmarks/target_throughput.py [--duration 6] [--sessions 200]

One target process (``--workers 1``, all agent delays 0) is pinned to CPU 1 and this load
generator to CPU 0, so each side has one core. Each client kind runs two phases bounded by
``--duration``: handshakes (connect + ack + close, as fast as ``--concurrency`` connectors
can, HS256 tokens minted beforehand) and turns (``--sessions`` sessions each sending one
message and reading the whole event sequence, back to back).

Two generators are used because the generator may saturate before the target does:
``websockets`` (the asyncio client of the third-party library) and ``raw``, a minimal
client on asyncio protocols that pre-builds its bytes and only parses frame headers. CPU use
of both processes is printed per phase: a figure is the target's capacity only when the
target, not the generator, is the side near 100% of its core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets

from wsload.config.profile import load_profile
from wsload.config.tokens import TokenMinter
from wsload.target import start_target

SECRET = "benchmark-secret-0123456789abcdef0123"
TARGET_CPU = 1
GENERATOR_CPU = 0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EVENTS_PER_TURN = 6  # the target's default turn: started, 2 thinking, 1 tool pair, completed
MESSAGE = json.dumps({"type": "user_message", "payload": {"content": "hi", "thread_id": "t"}})
TIMEOUT_S = 10.0
PINNED = False  # set by main(): core busy figures only mean something when pinned


# measurement -----------------------------------------------------------------------------
@dataclass
class Phase:
    client: str
    name: str
    count: int
    errors: int
    seconds: float
    target_cpu: float  # the target process's CPU time, as a fraction of one core
    generator_cpu: float
    target_core: float | None  # busy fraction of the target's core, kernel work included
    generator_core: float | None

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def saturated(self) -> str:
        """Which side ran out of CPU: judged on the pinned cores when there are two."""
        target = self.target_core if self.target_core is not None else self.target_cpu
        generator = self.generator_core if self.generator_core is not None else self.generator_cpu
        if target >= 0.9 and target >= generator - 0.05:
            return "target"
        if generator >= 0.9:
            return "generator"
        return "neither"

    def line(self) -> str:
        extra = f" ({self.rate * EVENTS_PER_TURN:,.0f} events/s)" if self.name == "turns" else ""
        cores = ""
        if self.target_core is not None and self.generator_core is not None:
            cores = f"; cores busy {self.target_core:4.0%} / {self.generator_core:4.0%}"
        return (
            f"{self.client:<10} {self.name:<10} {self.rate:9,.0f}/s{extra:<22} "
            f"{self.count:>7} in {self.seconds:4.1f}s, {self.errors} errors; "
            f"CPU target {self.target_cpu:4.0%} generator {self.generator_cpu:4.0%}{cores} "
            f"-> {self.saturated()} saturated"
        )


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def core_ticks() -> dict[int, tuple[int, int]]:
    """(busy, total) ticks per CPU; busy includes irq and softirq, where loopback TCP runs."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, values[:8])
            busy = user + nice + system + irq + softirq + steal
            ticks[int(name[3:])] = (busy, busy + idle + iowait)
    return ticks


def busy_fraction(before: dict, after: dict, cpu: int) -> float | None:
    if not PINNED or cpu not in before or cpu not in after:
        return None
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return busy / total if total else None


async def measure(
    client: str,
    name: str,
    target_pid: int,
    duration: float,
    body: Callable[[float], Awaitable[tuple[int, int]]],
) -> Phase:
    """Run ``body(deadline)`` -> (count, errors), attributing CPU use to both sides."""
    cpu_target, cpu_self, cores = process_cpu_seconds(target_pid), own_cpu_seconds(), core_ticks()
    start = time.perf_counter()
    count, errors = await body(start + duration)
    seconds = time.perf_counter() - start
    cores_after = core_ticks()
    return Phase(
        client,
        name,
        count,
        errors,
        seconds,
        (process_cpu_seconds(target_pid) - cpu_target) / seconds,
        (own_cpu_seconds() - cpu_self) / seconds,
        busy_fraction(cores, cores_after, TARGET_CPU),
        busy_fraction(cores, cores_after, GENERATOR_CPU),
    )


class TokenPool:
    """Fresh tokens handed out once each; a phase ends early when they run out."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.next = 0

    def take(self) -> str | None:
        if self.next >= len(self.tokens):
            return None
        self.next += 1
        return self.tokens[self.next - 1]


class SourceAddresses:
    """Rotate over 127.0.0.2-127.0.0.201 as source addresses.

    The target closes first, so each handshake leaves a TIME_WAIT socket on its side for a
    minute; from one source address the ~28k ephemeral ports then collide with those and
    connects stall. Many loopback sources keep every 4-tuple fresh.
    """

    def __init__(self, count: int = 200) -> None:
        self.addresses = [(f"127.0.0.{i}", 0) for i in range(2, 2 + count)]
        self.next = 0

    def take(self) -> tuple[str, int]:
        self.next = (self.next + 1) % len(self.addresses)
        return self.addresses[self.next]


SOURCES = SourceAddresses()


# the websockets client -------------------------------------------------------------------
WS_ERRORS = (OSError, asyncio.TimeoutError, websockets.WebSocketException)


def ws_connect(url: str, token: str) -> websockets.connect:
    return websockets.connect(
        url,
        subprotocols=["jwt-auth", f"jwt-auth.{token}"],
        compression=None,
        ping_interval=None,
        open_timeout=TIMEOUT_S,
        close_timeout=TIMEOUT_S,
        max_queue=None,
        local_addr=SOURCES.take(),
    )


async def ws_handshakes(url: str, pool: TokenPool, concurrency: int, deadline: float):
    ok = errors = 0

    async def connector() -> None:
        nonlocal ok, errors
        while time.perf_counter() < deadline and (token := pool.take()):
            try:
                async with ws_connect(url, token) as ws:
                    ack = await asyncio.wait_for(ws.recv(), TIMEOUT_S)
                ok += '"connection_established"' in ack
                errors += '"connection_established"' not in ack
            except WS_ERRORS:
                errors += 1

    await asyncio.gather(*(connector() for _ in range(concurrency)))
    return ok, errors


async def ws_turns(url: str, pool: TokenPool, sessions: int, duration: float, pid: int) -> Phase:
    sockets = []
    for _ in range(sessions):
        ws = await ws_connect(url, pool.take() or "")
        await ws.recv()  # the ack
        sockets.append(ws)

    async def body(deadline: float) -> tuple[int, int]:
        turns = errors = 0

        async def session(ws) -> None:
            nonlocal turns, errors
            try:
                while time.perf_counter() < deadline:
                    await ws.send(MESSAGE)
                    while '"agent_completed"' not in await asyncio.wait_for(ws.recv(), TIMEOUT_S):
                        pass
                    turns += 1
            except WS_ERRORS:
                errors += 1

        await asyncio.gather(*(session(ws) for ws in sockets))
        return turns, errors

    try:
        return await measure("websockets", "turns", pid, duration, body)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# the raw client --------------------------------------------------------------------------
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key and its accept value
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
CLOSE_FRAME = bytes([0x88, 0x82, 0, 0, 0, 0]) + (1000).to_bytes(2, "big")


def upgrade_request(host: str, port: int, path: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: jwt-auth, jwt-auth.{token}\r\n\r\n"
    ).encode()


def masked_text(payload: bytes) -> bytes:
    """A client text frame; the all-zero mask is valid and makes masking a no-op."""
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0xFE]) + size.to_bytes(2, "big")
    return b"\x81" + length + b"\0\0\0\0" + payload


class RawWebSocket(asyncio.Protocol):
    """Just enough of a client to load the target: checks the 101 and splits frames."""

    def __init__(self, request: bytes, on_text: Callable[[RawWebSocket, bytes], None]) -> None:
        self.request = request
        self.on_text = on_text
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            if not head.startswith(b"HTTP/1.1 101") or ACCEPT not in head:
                self.transport.close()
                return
            del buf[: end + 4]
            self.upgraded = True
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if size - pos < header + length:
                break
            if buf[pos] & 0x0F == 1:
                self.on_text(self, bytes(buf[pos + header : pos + header + length]))
            pos += header + length
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.upgraded)

    def close(self) -> None:
        """Send a close frame; the server answers and drops the connection."""
        self.transport.write(CLOSE_FRAME)


async def raw_handshakes(url: str, pool: TokenPool, concurrency: int, deadline: float):
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    loop = asyncio.get_running_loop()
    ok = errors = 0

    def on_text(ws: RawWebSocket, payload: bytes) -> None:
        nonlocal ok, errors
        if b'"connection_established"' in payload:
            ok += 1
        else:
            errors += 1
        ws.close()

    async def connector() -> None:
        nonlocal errors
        while time.perf_counter() < deadline and (token := pool.take()):
            request = upgrade_request(host, port, path, token)
            try:
                _, ws = await loop.create_connection(
                    lambda r=request: RawWebSocket(r, on_text),
                    host,
                    port,
                    local_addr=SOURCES.take(),
                )
                await asyncio.wait_for(ws.done, TIMEOUT_S)
            except (TimeoutError, OSError):
                errors += 1

    await asyncio.gather(*(connector() for _ in range(concurrency)))
    return ok, errors


async def raw_turns(url: str, pool: TokenPool, sessions: int, duration: float, pid: int) -> Phase:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    loop = asyncio.get_running_loop()
    message = masked_text(MESSAGE.encode())
    state = {"deadline": float("inf"), "turns": 0}
    acks: list[asyncio.Future[None]] = []

    def on_text(ws: RawWebSocket, payload: bytes) -> None:
        if b'"agent_completed"' in payload:
            state["turns"] += 1
            if time.perf_counter() < state["deadline"]:
                ws.transport.write(message)
            else:
                ws.close()
        elif b'"connection_established"' in payload:
            ws.acked.set_result(None)  # type: ignore[attr-defined]

    sockets: list[RawWebSocket] = []
    for _ in range(sessions):
        request = upgrade_request(host, port, path, pool.take() or "")
        _, ws = await loop.create_connection(
            lambda r=request: RawWebSocket(r, on_text), host, port, local_addr=SOURCES.take()
        )
        ws.acked = loop.create_future()  # type: ignore[attr-defined]
        acks.append(ws.acked)  # type: ignore[attr-defined]
        sockets.append(ws)
    await asyncio.wait_for(asyncio.gather(*acks), TIMEOUT_S)

    async def body(deadline: float) -> tuple[int, int]:
        state["deadline"] = deadline
        for ws in sockets:
            ws.transport.write(message)
        _done, pending = await asyncio.wait(
            [ws.done for ws in sockets], timeout=deadline - time.perf_counter() + TIMEOUT_S
        )
        for ws in sockets:
            if not ws.done.done():
                ws.transport.abort()
        return state["turns"], len(pending)

    return await measure("raw", "turns", pid, duration, body)


# main ------------------------------------------------------------------------------------
async def run_all(args: argparse.Namespace, url: str, pid: int) -> list[Phase]:
    minter = TokenMinter(load_profile().token, secret=SECRET)
    started = time.perf_counter()
    tokens = [minter.mint(f"bench-{i:06d}") for i in range(args.tokens)]
    print(f"minted {len(tokens):,} HS256 tokens in {time.perf_counter() - started:.1f}s")
    pool = TokenPool(tokens)
    phases: list[Phase] = []
    for client, handshakes, turns in (
        ("raw", raw_handshakes, raw_turns),
        ("websockets", ws_handshakes, ws_turns),
    ):
        if args.client not in ("both", client):
            continue
        phase = await measure(
            client,
            "handshakes",
            pid,
            args.duration,
            lambda deadline, h=handshakes: h(url, pool, args.concurrency, deadline),
        )
        print(phase.line(), flush=True)
        phases.append(phase)
        phase = await turns(url, pool, args.sessions, args.duration, pid)
        print(phase.line(), flush=True)
        phases.append(phase)
    return phases


def pin(pid: int, cpu: int) -> bool:
    try:
        os.sched_setaffinity(pid, {cpu})
    except (OSError, AttributeError):
        return False
    return True


def main() -> int:
    global PINNED
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per phase (6)")
    parser.add_argument("--sessions", type=int, default=200, help="concurrent chat sessions")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent connectors")
    parser.add_argument("--tokens", type=int, default=60_000, help="tokens minted beforehand")
    parser.add_argument("--client", choices=("both", "raw", "websockets"), default="both")
    args = parser.parse_args()
    args.duration = min(max(args.duration, 1.0), 10.0)  # four phases stay under a minute
    args.tokens = min(max(args.tokens, 4 * args.sessions + args.concurrency), 200_000)

    extra = ["--ttfe", "0", "--gap", "0", "--tool-duration", "0", "--log-level", "warning"]
    with start_target(extra, secret=SECRET) as target:
        pinned = len(os.sched_getaffinity(0)) >= 2 and pin(target.pid, TARGET_CPU)
        pinned = PINNED = pinned and pin(0, GENERATOR_CPU)
        where = (
            f"target pinned to CPU {TARGET_CPU}, generator to CPU {GENERATOR_CPU}"
            if pinned
            else "NOT pinned (fewer than 2 CPUs available): figures are not per core"
        )
        print(f"one target process, pid {target.pid}, {target.url}; {where}", flush=True)
        try:
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        except ImportError:  # pragma: no cover
            runner = asyncio.Runner()
        with runner:
            phases = runner.run(run_all(args, target.url, target.pid))
    for name in ("handshakes", "turns"):
        best = [p for p in phases if p.name == name and p.saturated() == "target"]
        if best:
            top = max(best, key=lambda p: p.rate)
            print(f"=> one target process sustains {top.rate:,.0f} {name}/s ({top.client} client)")
        else:
            top = max((p for p in phases if p.name == name), key=lambda p: p.rate)
            print(
                f"=> one target process sustains at least {top.rate:,.0f} {name}/s "
                "(the target never saturated: a lower bound)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
