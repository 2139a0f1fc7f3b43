"""Shared fixtures: real reference targets on loopback ports, and tiny raw servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from wsload.config.profile import load_profile
from wsload.config.tokens import TokenMinter
from wsload.target import start_target

SECRET = "test-secret-0123456789-abcdefghijklmnop"

# Two shared cores: a property's first example (imports, a DuckDB query) can take longer
# than hypothesis' 200 ms deadline under load; the suite's timeout still bounds a test.
settings.register_profile("wsload", deadline=None)
settings.load_profile("wsload")


@pytest.fixture(scope="session")
def profile():
    return load_profile()


@pytest.fixture(scope="session")
def minter(profile):
    return TokenMinter(profile.token, secret=SECRET)


@pytest.fixture(scope="session")
def target_factory() -> Iterator[Callable[..., object]]:
    """Start reference targets with given arguments, each once per test session."""
    started: dict[tuple[str, ...], object] = {}

    def get(*args: str):
        if args not in started:
            started[args] = start_target(list(args), secret=SECRET)
        return started[args]

    yield get
    for target in started.values():
        target.stop()


@pytest.fixture(scope="session")
def target(target_factory):
    return target_factory()


class RawServer:
    """A loopback TCP server that runs ``handle(conn)`` for each connection in a thread."""

    def __init__(self, handle: Callable[[socket.socket], None], *, accept: bool = True) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self._handle = handle
        self._stop = False
        self.connections: list[socket.socket] = []
        if accept:
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._stop = True
        for conn in self.connections:
            conn.close()
        self.sock.close()


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def make(handle: Callable[[socket.socket], None], **kwargs) -> RawServer:
        server = RawServer(handle, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


class BackendProcess:
    """A test server run as its own process; it prints its port once listening."""

    def __init__(self, script: str, args: tuple[str, ...], env: dict[str, str]) -> None:
        here = Path(__file__).resolve().parent
        self.process = subprocess.Popen(
            [sys.executable, str(here / script), *args],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"{script} did not start: {line!r}")
        self.port = int(line)
        self.host = f"ws://127.0.0.1:{self.port}"
        self.url = f"{self.host}/ws"
        _wait_listening(self.port)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()


def _wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@pytest.fixture
def fastapi_backend() -> Iterator[Callable[..., BackendProcess]]:
    """Start tests/fastapi_backend.py (FastAPI under uvicorn) with arguments and fault env."""
    started: list[BackendProcess] = []

    def start(*args: str, **env: str) -> BackendProcess:
        server = BackendProcess("fastapi_backend.py", args, {"BACKEND_SECRET": SECRET, **env})
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
