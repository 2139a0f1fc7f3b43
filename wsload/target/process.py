"""Running the target: one process, N processes on one port, or embedded as a subprocess.

With ``--workers N`` the parent forks N workers that each bind the same port with
SO_REUSEPORT, so the kernel spreads connections over them; with ``--port 0`` the parent
reserves a free port first so that all workers agree on it. The parent prints the single
listening line only once every worker listens, which is what ``start_target`` waits for.
Every listener sets SO_REUSEADDR, so a target restarted on the same ``--port`` binds at once
while the old one's connections sit in TIME_WAIT. Workers share their counters through a
temporary directory the parent owns (``stats``). aiohttp is imported by the serving
functions only: embedding a target does not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from wsload.config.tokens import SECRET_ENV
from wsload.errors import ConfigError
from wsload.net.budgets import raise_file_limit
from wsload.target.config import Material, TargetConfig
from wsload.target.spawn import SpawnedProcess

log = logging.getLogger("wsload.target")

LISTENING_RE = re.compile(
    r"wsload target listening on (?P<scheme>wss?)://(?P<host>\[[^\]]+\]|[^\s:/]+):(?P<port>\d+)/ws "
    r"\(pid (?P<pid>\d+), (?P<workers>\d+) workers\)"
)
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
PARENT_POLL_S = 1.0
PR_SET_PDEATHSIG = 1


def listening_line(host: str, port: int, pid: int, workers: int, scheme: str = "ws") -> str:
    """The one stdout line that says every worker listens (parsed by ``start_target``)."""
    url = f"{scheme}://{_url_host(host)}:{port}/ws"
    return f"wsload target listening on {url} (pid {pid}, {workers} workers)"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _announce(host: str, port: int, workers: int, scheme: str = "ws") -> None:
    print(listening_line(host, port, os.getpid(), workers, scheme), flush=True)


# serving ---------------------------------------------------------------------------------
def serve(config: TargetConfig, material: Material, *, exit_with_parent: bool = False) -> int:
    """Serve until SIGTERM/SIGINT; 0 on a clean stop. ``ConfigError`` for bind problems."""
    from wsload.target.server import quiet_token_logs

    quiet_token_logs()
    raise_file_limit()  # every session is an open file: as many as the hard limit allows
    parent = os.getppid() if exit_with_parent else None
    log.info(
        "target pid %d: auth_mode=%s algorithm=%s workers=%d turn=%s",
        os.getpid(),
        config.auth_mode,
        config.algorithm,
        config.workers,
        f"ttfe={config.ttfe_s}s gap={config.gap_s}s thinking={config.thinking_steps} "
        f"tools={config.tools}",
    )
    if config.workers == 1:
        _run(
            _serve_app(
                config,
                material,
                0,
                lambda port: _announce(config.host, port, 1, config.scheme),
                parent,
            )
        )
        return 0
    return _serve_workers(config, material, parent)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


async def _serve_app(
    config: TargetConfig,
    material: Material,
    worker_index: int,
    on_ready: Callable[[int], None],
    parent_pid: int | None,
) -> None:
    """Serve one worker's app until a stop signal (or the parent's exit when watched)."""
    from aiohttp import web

    from wsload.net.tls import server_context
    from wsload.target.server import build_app

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = build_app(config, material, worker_index=worker_index)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    watcher: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(
            runner,
            config.host,
            config.port,
            ssl_context=server_context(config.tls_cert, config.tls_key, config.tls_client_ca)
            if config.tls_cert
            else None,
            reuse_address=True,
            reuse_port=config.workers > 1,
            backlog=2048,
        )
        try:
            await site.start()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(
                f"cannot listen on --host {config.host} --port {config.port}: {reason}",
                fix="choose another --port (0 picks a free one) or --host, "
                "or stop what already listens there",
            ) from None
        on_ready(runner.addresses[0][1])
        if parent_pid is not None:
            watcher = loop.create_task(_watch_parent(parent_pid, stop))
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await runner.cleanup()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Stop when the process that started us is gone (we were re-parented)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_POLL_S)
    stop.set()


def _reserve_port(host: str) -> tuple[socket.socket, int]:
    """Bind (without listening) a free port with SO_REUSEPORT, held until workers listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), 0))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot bind {host}: {exc.strerror or exc}", fix="check --host"
        ) from None
    return sock, sock.getsockname()[1]


def _serve_workers(config: TargetConfig, material: Material, parent_pid: int | None) -> int:
    reserved: socket.socket | None = None
    if config.port == 0:
        reserved, port = _reserve_port(config.host)
        config = replace(config, port=port)
    stats_dir = tempfile.mkdtemp(prefix="wsload-target-stats-")
    config = replace(config, stats_dir=stats_dir)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    previous_wakeup: int | None = None
    ctx = multiprocessing.get_context("fork")
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        pipes = []
        for index in range(config.workers):
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker_main,
                args=(config, material, index, writer, os.getpid()),
                name=f"wsload-target-{index}",
            )
            proc.start()
            writer.close()
            procs.append(proc)
            pipes.append(reader)
        # Set after forking so that workers do not inherit it: a signal to the parent
        # writes a byte to the pipe, which wakes the wait below at once.
        previous_wakeup = signal.set_wakeup_fd(wake_w)
        _await_workers(procs, pipes, lambda: stopping)
        if reserved is not None:
            reserved.close()
            reserved = None
        if stopping:
            return 0
        _announce(config.host, config.port, config.workers, config.scheme)
        reported: set[int] = set()
        while not stopping:
            if parent_pid is not None and os.getppid() != parent_pid:
                break
            alive = [p for p in procs if p.is_alive()]
            for proc in procs:
                if not proc.is_alive() and proc.pid not in reported:
                    reported.add(proc.pid or 0)
                    log.error("worker pid %s exited with code %s", proc.pid, proc.exitcode)
            if not alive:
                return 1
            ready = multiprocessing.connection.wait(
                [wake_r, *(p.sentinel for p in alive)], timeout=1.0
            )
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
        return 0
    finally:
        if reserved is not None:
            reserved.close()
        _stop_workers(procs)
        shutil.rmtree(stats_dir, ignore_errors=True)
        if previous_wakeup is not None:
            signal.set_wakeup_fd(previous_wakeup)
        os.close(wake_r)
        os.close(wake_w)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _await_workers(
    procs: Sequence[multiprocessing.process.BaseProcess],
    pipes: list[multiprocessing.connection.Connection],
    stopping: Callable[[], bool],
) -> None:
    """Wait until every worker reported it listens; ``ConfigError`` with the first failure."""
    pending = dict(zip(pipes, procs, strict=True))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while pending and not stopping():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"{len(pending)} worker(s) did not listen within {READY_TIMEOUT_S}s")
        ready = multiprocessing.connection.wait(list(pending), timeout=min(remaining, 0.2))
        for pipe in ready:
            proc = pending.pop(pipe)  # type: ignore[call-overload]
            try:
                kind, detail = pipe.recv()
            except EOFError:
                proc.join(1.0)
                raise RuntimeError(
                    f"worker {proc.name} exited with code {proc.exitcode} before listening"
                ) from None
            finally:
                pipe.close()
            if kind == "config_error":
                raise ConfigError(detail)
            if kind != "ready":
                raise RuntimeError(f"worker {proc.name} failed: {detail}")


def _worker_main(
    config: TargetConfig,
    material: Material,
    index: int,
    pipe: multiprocessing.connection.Connection,
    parent_pid: int,
) -> None:
    """Entry of a forked worker: serve, tell the parent when listening, die with the parent."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # until the event loop installs its own
    _die_with_parent()
    if os.getppid() != parent_pid:
        os._exit(1)

    def ready(port: int) -> None:
        pipe.send(("ready", os.getpid()))
        pipe.close()

    try:
        _run(_serve_app(config, material, index, ready, parent_pid))
    except ConfigError as exc:
        with contextlib.suppress(OSError):
            pipe.send(("config_error", str(exc)))
        sys.exit(2)
    except Exception as exc:
        with contextlib.suppress(OSError):
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the parent dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _stop_workers(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


# embedding -------------------------------------------------------------------------------
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningTarget:
    """A target subprocess that listens; ``stop()`` (or leaving the ``with``) ends it."""

    process: SpawnedProcess
    host: str
    port: int
    workers: int
    _stderr: IO[bytes] = field(repr=False)
    _drainer: threading.Thread | None = field(default=None, repr=False)
    scheme: str = "ws"  # wss with --tls-cert

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"{self.scheme}://{_url_host(self.host)}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        scheme = "https" if self.scheme == "wss" else "http"
        return f"{scheme}://{_url_host(self.host)}:{self.port}"

    def stderr_text(self) -> str:
        """What the target wrote to stderr so far (its logs; never tokens or secrets)."""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")
        except ValueError:  # already closed
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; the exit code."""
        proc = self.process
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        if self._drainer is not None:
            self._drainer.join(0.5)  # it closes stdout at EOF
        elif proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> RunningTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stderr.close()


def start_target(
    extra_args: Sequence[str] = (), *, secret: str | None = None, timeout: float = 15
) -> RunningTarget:
    """Start ``python -m wsload.target --port 0 ...`` and wait until it listens.

    The secret travels in ``JWT_SECRET_KEY`` (never on the command line, where other users
    could read it); without one the variable is inherited. ``RuntimeError`` with the
    target's stderr when it exits or stays silent before listening.
    """
    env = dict(os.environ)
    if secret is not None:
        env[SECRET_ENV] = secret
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "wsload.target", "--port", "0", "--exit-with-parent"]
    cmd += list(extra_args)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the target
    proc = SpawnedProcess(cmd, env, stderr)  # no Python-level fork: see spawn.py
    target = None
    try:
        match = _read_listening_line(proc, timeout)
        target = RunningTarget(
            proc,
            match["host"].strip("[]"),
            int(match["port"]),
            int(match["workers"]),
            stderr,
            scheme=match["scheme"],
        )
    except RuntimeError as exc:
        failed = RunningTarget(proc, "127.0.0.1", 0, 0, stderr)
        code = failed.stop(timeout=3.0)
        text = failed.stderr_text().strip() or "(no stderr)"
        stderr.close()
        raise RuntimeError(f"{exc} (exit code {code}); its stderr:\n{text}") from None
    if target.host in ("0.0.0.0", "::"):
        target.host = "127.0.0.1" if target.host == "0.0.0.0" else "::1"
    target._drainer = threading.Thread(target=_drain, args=(proc.stdout,), daemon=True)
    target._drainer.start()
    return target


def _read_listening_line(proc: SpawnedProcess, timeout: float) -> re.Match[str]:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"the target did not print its listening line within {timeout}s")
        readable, _, _ = select.select([fd], [], [], min(remaining, 0.1))
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(min(2.0, max(0.1, deadline - time.monotonic())))
                raise RuntimeError("the target exited before listening")
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                match = LISTENING_RE.search(line.decode("utf-8", "replace"))
                if match:
                    return match
        elif proc.poll() is not None:
            raise RuntimeError("the target exited before listening")


def _drain(stream: IO[bytes] | None) -> None:
    """Read the target's stdout to EOF so that it can never block on a full pipe.

    It waits in ``select`` before each read so that under gevent (Locust), where this
    thread is a greenlet and ``os.read`` is not cooperative, it never blocks the hub.
    """
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        fd = stream.fileno()
        while True:
            readable, _, _ = select.select([fd], [], [], 1.0)
            if readable and not os.read(fd, 65536):
                break
    stream.close()
