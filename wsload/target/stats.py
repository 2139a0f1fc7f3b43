"""The target's counters as JSON for ``GET /stats``, per process and summed over workers.

Each process counts in plain ints (one event loop, no locks). With ``--workers N`` a request
reaches one worker only, so the workers share their counters through files: every worker
writes ``worker-<index>.json`` into a directory the parent created, once a second and
whenever it gets SIGUSR1. ``GET /stats?all=1`` signals the other workers, waits (at most
``FRESH_TIMEOUT_S``) until each has written a snapshot newer than the request, and answers
the sum; a worker that did not answer in time is summed with its last snapshot and listed
as not fresh. Files are replaced atomically, so a reader never sees half a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

WRITE_INTERVAL_S = 1.0
FRESH_TIMEOUT_S = 1.5
POLL_S = 0.02


def merge(counter_sets: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum counter dicts key by key; nested dicts (hostile frames by kind) are summed too."""
    total: dict[str, Any] = {}
    for counters in counter_sets:
        for key, value in counters.items():
            if isinstance(value, dict):
                total[key] = merge([total.get(key, {}), value])
            elif isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


class StatsShare:
    """One worker's side of the shared stats directory."""

    def __init__(self, directory: str, worker_index: int, snapshot: Any) -> None:
        self.dir = Path(directory)
        self.index = worker_index
        self.path = self.dir / f"worker-{worker_index}.json"
        self._snapshot = snapshot  # () -> dict, this worker's /stats answer
        self._task: asyncio.Task[None] | None = None

    def write(self) -> None:
        """Write this worker's snapshot now (atomically); errors are ignored."""
        body = {"written_at": time.time(), "stats": self._snapshot()}
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(body, separators=(",", ":")))
            os.replace(tmp, self.path)

    async def start(self) -> None:
        """Answer SIGUSR1 with a fresh snapshot, then write one every second."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(RuntimeError, NotImplementedError, ValueError):
            loop.add_signal_handler(signal.SIGUSR1, self.write)
        self.write()  # only now do others find our pid, and we answer SIGUSR1
        self._task = loop.create_task(self._every_second())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.write()

    async def _every_second(self) -> None:
        while True:
            await asyncio.sleep(WRITE_INTERVAL_S)
            self.write()

    async def collect(self, timeout: float = FRESH_TIMEOUT_S) -> list[tuple[dict[str, Any], bool]]:
        """The other workers' snapshots, each with whether it is newer than this call."""
        asked = time.time()
        peers = {p: self._read(p) for p in self.dir.glob("worker-*.json") if p != self.path}
        for body in peers.values():
            pid = (body or {}).get("stats", {}).get("pid")
            if isinstance(pid, int) and pid != os.getpid():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            peers = {p: self._read(p) for p in peers}
            if all(b and b["written_at"] >= asked for b in peers.values()):
                break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_S)
        return [(b["stats"], b["written_at"] >= asked) for b in peers.values() if b]

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(body, dict) or not isinstance(body.get("stats"), dict):
            return None
        return body


def aggregate(own: dict[str, Any], others: list[tuple[dict[str, Any], bool]]) -> dict[str, Any]:
    """The ``?all=1`` answer: counters summed over this worker and the others."""
    snapshots = [(own, True), *others]
    snapshots.sort(key=lambda item: item[0].get("worker", 0))
    return {
        "scope": "all",
        "workers": own.get("workers", 1),
        "reporting": len(snapshots),
        "fresh": all(fresh for _, fresh in snapshots),
        "processes": [
            {"pid": s.get("pid"), "worker": s.get("worker"), "fresh": fresh}
            for s, fresh in snapshots
        ],
        "memory_kb": sum(s.get("memory_kb") or 0.0 for s, _ in snapshots),
        "counters": merge([s.get("counters", {}) for s, _ in snapshots]),
    }
