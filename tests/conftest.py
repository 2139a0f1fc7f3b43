"""Shared fixtures: real reference targets on loopback ports, and tiny raw servers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from wsload.profile import load_profile
from wsload.target import start_target
from wsload.tokens import TokenMinter

SECRET = "test-secret-0123456789-abcdefghijklmnop"


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
