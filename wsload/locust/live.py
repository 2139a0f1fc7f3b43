"""Live aggregates of the run's samples, for the web UI and the HTML report: exact, whole run.

Fed the very records the results writer writes on this process (standalone, or a master
with its workers' batches), so the web UI shows what ``wsload summary`` later prints from
the same run folder: percentiles of the successful samples, linearly interpolated as pandas
does, not Locust's rounded histogram. Adding a sample is a few dict and array operations
(every sample goes through here); the sorting happens only when a table is asked for.

Besides the tables per stats name it keeps the headline of the run: completed agent turns,
turns per second, the failed turns and their share, failures by taxonomy id (with the first
few failing samples of each id as examples), and a series per clock second (turns, failed
turns by id, TTFE and end-to-end percentiles, users) for the charts.
"""

from __future__ import annotations

import csv
import io
import math
import time
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from wsload.net.probes import ACCEPTED
from wsload.run.recorder import redact_text
from wsload.run.records import HealthTick, Record, Sample, TurnRecord, Who, shape_samples

TURN_PREFIX = "turn:"
# Timed on the security tab: handshake, auth ack, token refresh.
AUTH_NAMES = ("connect", "auth", "session:refresh")
# Failures listed there too: events of another user (older runs named it "isolation").
SECURITY_FAILURE_NAMES = (*AUTH_NAMES, "session:isolation", "isolation")
# Within a turn: first event, each event in the order first seen, gaps, spans, whole turn.
_KIND_ORDER = {"event": 1, "gap": 2, "span": 3, "turn": 4}

TURN_COLUMNS = ("name", "count", "median", "p95", "p99", "fail", "failures")
AUTH_COLUMNS = ("section", "name", "outcome", "count", "fail", "median", "p95", "p99")
EXAMPLE_COLUMNS = ("failure", "count", "name", "user", "subject", "session", "detail")
# Single-sample checks: grouped into one row per outcome, a row of their own when failing.
PROBE_KINDS = ("probe", "conformance")
EXAMPLES_PER_ID = 3
DETAIL_CHARS = 240
# "Now": turns/s over this many whole seconds, ending this long before the clock (records
# arrive once a second, a worker's a second or so later still).
RATE_WINDOW_S = 10
RATE_LAG_S = 2
# A second's percentiles are computed, and its latencies dropped, once it is this old.
SETTLE_S = 5
_INF, _NEG_INF = math.inf, -math.inf


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


class _Second:
    """One clock second of the run (by when each turn ended)."""

    __slots__ = ("e2e", "e2e_q", "failed", "failures", "ttfe", "ttfe_q", "turns", "users")

    def __init__(self) -> None:
        self.turns = 0
        self.failed = 0
        self.failures: dict[str, int] = {}
        self.ttfe = array("d")
        self.e2e = array("d")
        self.ttfe_q: tuple[float, float] | None = None  # (p50, p95) once settled
        self.e2e_q: tuple[float, float] | None = None
        self.users: int | None = None

    def settle(self) -> None:
        self.ttfe_q, self.ttfe = _p50_p95(self.ttfe), array("d")
        self.e2e_q, self.e2e = _p50_p95(self.e2e), array("d")

    def quantiles(self) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
        if self.ttfe_q is not None or self.e2e_q is not None or not (self.ttfe or self.e2e):
            return self.ttfe_q, self.e2e_q
        return _p50_p95(self.ttfe), _p50_p95(self.e2e)


class LiveStats:
    """Records in; the headline, the series, the tab tables and their CSV out."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new run (or Locust's reset) starts from zero."""
        self._names: dict[str, _Name] = {}
        # a turn shape -> the entries of its timings, in order (turns of one shape share them)
        self._shapes: dict[Any, list[_Name]] = {}
        # (kind, name, outcome) -> [n, failed], kind "probe" or "conformance"
        self._probes: dict[tuple[str, str, str], list[int]] = {}
        self._examples: dict[str, list[dict[str, Any]]] = {}
        self._seconds: dict[int, _Second] = {}
        self._settled = 0  # seconds before this one are settled
        self.samples = 0
        self.turns = 0
        self.failed_turns = 0
        self.turn_failures: dict[str, int] = {}
        self.first_start = math.inf  # when the first measurement started (epoch s)
        self.last_turn_end = -math.inf  # when the last turn ended
        self.users: int | None = None

    def add_records(self, records: Iterable[Record]) -> None:
        """Take a batch of records (as written: a process's own, or a worker's)."""
        seconds = self._seconds
        for record in records:
            kind = type(record)
            if kind is HealthTick:
                if record.users is not None:
                    self.users = record.users
                    self._second(int(record.at)).users = record.users
                continue
            started = record.started_at
            if started < self.first_start:
                self.first_start = started
            if kind is TurnRecord:
                e2e = record.e2e_ms
                end = started + e2e / 1000.0 if math.isfinite(e2e) else started
                if end > self.last_turn_end:
                    self.last_turn_end = end
                second = seconds.get(int(end))
                if second is None:
                    second = self._second(int(end))
                second.turns += 1
                self.turns += 1
                result = record.result
                failure = result.failure
                if failure is None:
                    if math.isfinite(e2e):
                        second.e2e.append(e2e)
                else:
                    second.failed += 1
                    second.failures[failure] = second.failures.get(failure, 0) + 1
                    self.failed_turns += 1
                    self.turn_failures[failure] = self.turn_failures.get(failure, 0) + 1
                ttfe = result.ttfe_ms
                if ttfe is not None and math.isfinite(ttfe):
                    second.ttfe.append(ttfe)
                self._add_turn(record, failure, e2e)
                continue
            self.add_samples(record.samples(), record.who)
        self._settle()

    def _add_turn(self, record: TurnRecord, failure: str | None, e2e: float) -> None:
        """``add_samples(record.samples())`` without making the samples: every timing but
        the last is a success, into the entries its turn shape names (cached per shape)."""
        shape = record.shape()
        entries = self._shapes.get(shape)
        if entries is None:
            entries = self._shapes[shape] = [
                self._entry(kind, name) for kind, name in shape_samples(shape)
            ]
        values = record.timings()
        self.samples += len(values) + 1
        for entry, ms in zip(entries, values, strict=True):
            if _NEG_INF < ms < _INF:  # finite (not NaN), without a call per value
                entry.ok_ms.append(ms)
            else:
                entry.untimed += 1
        if failure is None and math.isfinite(e2e):
            self._entry("turn", "turn:e2e").ok_ms.append(e2e)
        else:
            self.samples -= 1  # add_samples counts it again
            self.add_samples((Sample("turn", "turn:e2e", e2e, failure, record.detail),), record.who)

    def _entry(self, kind: str, name: str) -> _Name:
        names = self._names
        entry = names.get(name)
        if entry is None:
            entry = names[name] = _Name(kind, len(names))
        return entry

    def _second(self, at: int) -> _Second:
        second = self._seconds.get(at)
        if second is None:
            second = self._seconds[at] = _Second()
        return second

    def _settle(self, now: float | None = None) -> None:
        """Percentiles of the seconds that are over; their latencies are no longer kept."""
        if not self._seconds:
            return
        limit = int(max(self._seconds) if now is None else now) - SETTLE_S
        if limit <= self._settled:
            return
        for at, second in self._seconds.items():
            if self._settled <= at < limit and second.ttfe_q is None and second.e2e_q is None:
                second.settle()
        self._settled = limit

    def add_samples(self, samples: Iterable[Sample], who: Who | None = None) -> None:
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
                examples = self._examples.get(failure)
                if examples is None:
                    examples = self._examples[failure] = []
                if len(examples) < EXAMPLES_PER_ID:
                    examples.append(_example(name, detail, who))
            if kind in PROBE_KINDS:
                outcome = (detail or "").split(":", 1)[0] or "unknown"
                bucket = self._probes.get((kind, name, outcome))
                if bucket is None:
                    bucket = self._probes[(kind, name, outcome)] = [0, 0]
                bucket[0] += 1
                bucket[1] += 0 if failure is None else 1

    # headline ---------------------------------------------------------------------------
    def headline(self, now: float | None = None) -> dict[str, Any]:
        """The run at a glance: turns, turns/s (now and whole run), failed turns and share,
        failures by id, TTFE and e2e percentiles, users.

        Turns/s over the run is completed turns over the time from the first measurement's
        start to the last turn's end, as ``wsload summary`` computes it from the samples.
        """
        now = time.time() if now is None else now
        turns, failed = self.turns, self.failed_turns
        span = self.last_turn_end - self.first_start if turns else 0.0
        ttfe, e2e = self._names.get("turn:ttfe"), self._names.get("turn:e2e")
        return {
            "turns": turns,
            "turns_per_s": turns / span if span > 0 else None,
            "turns_per_s_now": self.current_rate(now),
            "failed_turns": failed,
            "failed_share": failed / turns if turns else None,
            "failures": _most_first(self.turn_failures),
            "duration_s": span,
            "users": self.users,
            "ttfe": _percentiles(ttfe.ok_ms, 1) if ttfe else _percentiles(array("d"), 1),
            "e2e": _percentiles(e2e.ok_ms, 1) if e2e else _percentiles(array("d"), 1),
            # streamed answers: None until a turn had token events
            **{
                key: _percentiles(entry.ok_ms, 1) if (entry := self._names.get(name)) else None
                for key, name in (("ttft", "turn:ttft"), ("itl", "turn:itl"))
            },
        }

    def current_rate(self, now: float) -> float | None:
        """Turns/s over the last whole seconds that have surely arrived (None before any)."""
        if not self.turns:
            return None
        end = int(now) - RATE_LAG_S
        start = max(end - RATE_WINDOW_S, int(self.first_start))
        if end <= start:  # the run is younger than the lag: what there is, over its age
            age = now - self.first_start
            return self.turns / age if age > 0 else None
        seconds = self._seconds
        turns = sum(seconds[at].turns for at in range(start, end) if at in seconds)
        return turns / (end - start)

    def series(self, max_points: int = 600, now: float | None = None) -> dict[str, Any]:
        """Per clock second (merged into wider bins on long runs): turns/s, failed turns/s
        by taxonomy id, TTFE and e2e p50/p95 (ms), users. Times relative to the first
        second, in seconds. With ``now``, the seconds still arriving are left out."""
        seconds = [at for at in self._seconds if now is None or at < int(now) - 1]
        if not seconds:
            return {"t": [], "bin_s": 1, "turns_per_s": [], "failed_per_s": {}, "users": []}
        first, last = min(seconds), max(seconds)
        bin_s = max(1, math.ceil((last - first + 1) / max_points))
        ids = [failure for failure, _ in _most_first(self.turn_failures)]
        out: dict[str, Any] = {"t": [], "bin_s": bin_s, "turns_per_s": [], "users": []}
        out["failed_per_s"] = {failure: [] for failure in ids}
        for key in ("ttfe_p50", "ttfe_p95", "e2e_p50", "e2e_p95"):
            out[key] = []
        for start in range(first, last + 1, bin_s):
            members = [self._seconds.get(at) for at in range(start, start + bin_s)]
            present = [m for m in members if m is not None]
            out["t"].append(start - first)
            out["turns_per_s"].append(sum(m.turns for m in present) / bin_s)
            for failure in ids:
                failed = sum(m.failures.get(failure, 0) for m in present)
                out["failed_per_s"][failure].append(failed / bin_s)
            users = [m.users for m in present if m.users is not None]
            out["users"].append(users[-1] if users else None)
            for name, pick in (("ttfe", 0), ("e2e", 1)):
                weighted = [(m.quantiles()[pick], m.turns) for m in present]
                weighted = [(q, w) for q, w in weighted if q is not None]
                for i, label in ((0, "p50"), (1, "p95")):
                    total = sum(w for _, w in weighted)
                    value = sum(q[i] * w for q, w in weighted) / total if total else None
                    out[f"{name}_{label}"].append(None if value is None else round(value, 1))
        return out

    def examples(self) -> list[dict[str, Any]]:
        """The first few failing samples of each taxonomy id, most frequent id first."""
        counts: dict[str, int] = {}
        for entry in self._names.values():
            for failure, n in entry.failures.items():
                counts[failure] = counts.get(failure, 0) + n
        return [
            {"failure": failure, "count": n, **example}
            for failure, n in _most_first(counts)
            for example in self._examples.get(failure, [])
        ]

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
        rows += self.probe_rows()
        return rows

    def probe_rows(self) -> list[dict[str, Any]]:
        """Probes grouped: one row per kind and outcome over every probe of the kind (each
        probe is a single sample, dozens of them), then a row per probe that failed."""
        rows: list[dict[str, Any]] = []
        blank = dict.fromkeys(("median", "p95", "p99"))
        for kind in PROBE_KINDS:
            mine = {key: v for key, v in self._probes.items() if key[0] == kind}
            if not mine:
                continue
            probes = {name for _, name, _ in mine}
            grouped: dict[str, list[int]] = {}
            for (_, _, outcome), (n, failed) in mine.items():
                bucket = grouped.setdefault(outcome, [0, 0])
                bucket[0] += n
                bucket[1] += failed
            label = f"{kind}:* ({len(probes)} kinds)"
            for outcome, (n, failed) in sorted(grouped.items(), key=lambda i: (-i[1][1], i[0])):
                rows.append(
                    {"section": kind, "name": label, "outcome": _outcome(kind, outcome)}
                    | {"count": n, "fail": failed, **blank}
                )
            for (_, name, outcome), (n, failed) in sorted(mine.items()):
                if failed:
                    rows.append(
                        {"section": kind, "name": name, "outcome": _outcome(kind, outcome)}
                        | {"count": n, "fail": failed, **blank}
                    )
        return rows

    def turn_csv(self) -> str:
        return _csv(TURN_COLUMNS, self.turn_table(digits=3))

    def auth_csv(self) -> str:
        return _csv(AUTH_COLUMNS, self.auth_table(digits=3))

    def examples_csv(self) -> str:
        return _csv(EXAMPLE_COLUMNS, self.examples())


def _outcome(kind: str, outcome: str) -> str:
    if outcome != ACCEPTED:
        return outcome
    return f"{outcome} (NOT ENFORCED)" if kind == "probe" else f"{outcome} (NOT CONFORMANT)"


def _example(name: str, detail: str, who: Who | None) -> dict[str, Any]:
    """What a person needs to find one failing sample again: name, who, detail (masked)."""
    return {
        "name": name,
        "user": who.user if who is not None else None,
        "subject": who.subject if who is not None else "",
        "session": who.session if who is not None else "",
        "detail": redact_text(detail or "")[:DETAIL_CHARS],
    }


def _p50_p95(values: array) -> tuple[float, float] | None:
    if not values:
        return None
    q = np.quantile(np.array(values, dtype=np.float64), (0.5, 0.95))
    return float(q[0]), float(q[1])


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
