"""Starting the target's process with ``posix_spawn``: no Python-level fork in the parent.

Inside Locust the parent is patched by gevent, whose ``subprocess.Popen`` forks at the
Python level and so runs every at-fork hook in the child before the exec. OpenTelemetry's
(``--otel``) restarts its export thread there, which under gevent switches to the parent's
greenlets: the child never reaches the exec and the run hangs. ``posix_spawn`` creates the
child in C and execs at once; no Python code runs in it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import IO

_POLL_S = 0.05


class SpawnedProcess:
    """The part of ``subprocess.Popen`` the target needs, over a ``posix_spawn`` child:
    stdin from /dev/null, stdout a pipe (``stdout``), stderr the given file."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str], stderr: IO[bytes]) -> None:
        read_end, write_end = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            self.pid = os.posix_spawn(
                cmd[0],
                list(cmd),
                dict(env),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, write_end, 1),
                    (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2),
                ],
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
            os.close(devnull)
        self.stdout: IO[bytes] | None = os.fdopen(read_end, "rb", buffering=0)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once the child ended (reaped here), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (gevent's SIGCHLD watcher)
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(_POLL_S)  # cooperative under gevent
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
