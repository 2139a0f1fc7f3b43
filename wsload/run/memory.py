"""A process's memory as the kernel counts it, for memory per session.

PSS (proportional set size, ``/proc/<pid>/smaps_rollup``) where Linux gives it: pages a
forked worker shares with its parent count once across the processes, so PSS sums over a
master and its workers (or a target and its workers) without counting shared pages twice.
Elsewhere RSS.
"""

from __future__ import annotations

import os
from pathlib import Path


def memory_kb(pid: int | str = "self") -> float | None:
    """PSS of ``pid`` in KiB (RSS where PSS is not available); None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return _resource_rss_kb() if pid in ("self", os.getpid()) else None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024.0


def _resource_rss_kb() -> float | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return None
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
