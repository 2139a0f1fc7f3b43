"""Live aggregates of the run's samples, for the web UI tabs: exact, per name, whole run.

Fed the very records the results writer writes on this process (standalone, or a master
with its workers' batches), so a tab shows what ``wsload summary`` later prints from the
same run folder: percentiles of the successful samples, linearly interpolated as pandas
does, not Locust's rounded histogram. Adding a sample is a few dict and array operations
(every sample goes through here); the sorting happens only when a table is asked for.
"""

from __future__ import annotations

import csv
import io
import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from wsload.net.probes import ACCEPTED
from wsload.run.records import HealthTick, Record, Sample

TURN_PREFIX = "turn:"
# Timed on the security tab: handshake, auth ack, token refresh.
AUTH_NAMES = ("connect", "auth", "session:refresh")
# Failures listed there too: events of another user (older runs named it "isolation").
SECURITY_FAILURE_NAMES = (*AUTH_NAMES, "session:isolation", "isolation")
# Within a turn: first event, each event in the order first seen, gaps, spans, whole turn.
_KIND_ORDER = {"event": 1, "gap": 2, "span": 3, "turn": 4}

TURN_COLUMNS = ("name", "count", "median", "p95", "p99", "fail", "failures")
AUTH_COLUMNS = ("section", "name", "outcome", "count", "fail", "median", "p95", "p99")


class _Name:
    """One stats name: latencies of its successful samples, failures by taxonomy id."""

    __slots__ = ("failures", "kind", "ok_ms", "order", "untimed")

    def __init__(self, kind: str, order: int) -> None:
        self.kind = kind
        self.order = order
        self.ok_ms = array("d")
        self.failures: dict[str, int] = {}
        self.untimed = 0

    @property
    def fail(self) -> int:
        return sum(self.failures.values())

    @property
    def count(self) -> int:
        return len(self.ok_ms) + self.untimed + self.fail


class LiveStats:
    """Records in, the two tab tables and their CSV out."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new run (or Locust's reset) starts from zero."""
        self._names: dict[str, _Name] = {}
        self._probes: dict[tuple[str, str], list[int]] = {}  # (probe, outcome) -> [n, failed]
        self.samples = 0

    def add_records(self, records: Iterable[Record]) -> None:
        """Take a batch of records (as written: a process's own, or a worker's)."""
        for record in records:
            if type(record) is not HealthTick:
                self.add_samples(record.samples())

    def add_samples(self, samples: Iterable[Sample]) -> None:
        names = self._names
        for kind, name, ms, failure, detail in samples:
            self.samples += 1
            entry = names.get(name)
            if entry is None:
                entry = names[name] = _Name(kind, len(names))
            if failure is None:
                if math.isfinite(ms):
                    entry.ok_ms.append(ms)
                else:
                    entry.untimed += 1  # counted, never allowed to break the recording path
            else:
                entry.failures[failure] = entry.failures.get(failure, 0) + 1
            if kind == "probe":
                outcome = (detail or "").split(":", 1)[0] or "unknown"
                bucket = self._probes.get((name, outcome))
                if bucket is None:
                    bucket = self._probes[(name, outcome)] = [0, 0]
                bucket[0] += 1
                bucket[1] += 0 if failure is None else 1

    # tables ----------------------------------------------------------------------------
    def turn_table(self, digits: int = 1) -> list[dict[str, Any]]:
        """Per turn stage: count, median, p95, p99 (ms) and failures by taxonomy id."""
        stages = [(n, e) for n, e in self._names.items() if n.startswith(TURN_PREFIX)]
        stages.sort(key=lambda item: _stage_key(*item))
        return [
            {"name": name, "count": e.count, **_percentiles(e.ok_ms, digits), "fail": e.fail}
            | {"failures": _by_id(e.failures)}
            for name, e in stages
        ]

    def auth_table(self, digits: int = 1) -> list[dict[str, Any]]:
        """Connect and auth latency, their failures by id, and probes x outcome, as one table.

        One table because a Locust tab holds one: ``section`` tells the three parts apart.
        """
        rows: list[dict[str, Any]] = []
        blank = dict.fromkeys(("median", "p95", "p99"))
        for name in AUTH_NAMES:
            e = self._names.get(name)
            if e is not None:
                rows.append(
                    {"section": "latency", "name": name, "outcome": "", "count": e.count}
                    | {"fail": e.fail, **_percentiles(e.ok_ms, digits)}
                )
        for name in SECURITY_FAILURE_NAMES:
            e = self._names.get(name)
            for failure, n in _most_first(e.failures if e else {}):
                rows.append(
                    {"section": "failure", "name": name, "outcome": failure, "count": n}
                    | {"fail": n, **blank}
                )
        for (probe, outcome), (n, failed) in sorted(self._probes.items()):
            shown = f"{outcome} (NOT ENFORCED)" if outcome == ACCEPTED else outcome
            rows.append(
                {"section": "probe", "name": probe.removeprefix("probe:"), "outcome": shown}
                | {"count": n, "fail": failed, **blank}
            )
        return rows

    def turn_csv(self) -> str:
        return _csv(TURN_COLUMNS, self.turn_table(digits=3))

    def auth_csv(self) -> str:
        return _csv(AUTH_COLUMNS, self.auth_table(digits=3))


def _stage_key(name: str, entry: _Name) -> tuple[int, int, int]:
    first = 0 if name == "turn:ttfe" else 1
    return (_KIND_ORDER.get(entry.kind, 5), first, entry.order)


def _percentiles(values: array, digits: int) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None, "p99": None}
    # A copy: a NumPy view would pin the array's buffer and make the next append fail.
    q = np.quantile(np.array(values, dtype=np.float64), (0.5, 0.95, 0.99))
    return {"median": round(float(q[0]), digits), "p95": round(float(q[1]), digits)} | {
        "p99": round(float(q[2]), digits)
    }


def _most_first(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _by_id(failures: dict[str, int]) -> str:
    return ", ".join(f"{failure} x{n}" for failure, n in _most_first(failures))


def _csv(columns: Sequence[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
