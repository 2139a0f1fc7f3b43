"""The step plan of a capacity run, without Locust: which user count to run at each tick.

Pure (no Locust, no clock of its own: it is handed the time, the running user count and a
judge), so the raise-then-narrow search is tested exhaustively without a load. The Locust
side (``wsload.locust.shapes``) feeds it shape ticks and judges steps from Locust's stats with
``StatsWindow``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsload.capacity.slo import LIMITED_NAMES, RATED_NAMES, SLO
from wsload.capacity.steps_file import STEP_COLUMNS, STEPS_FILE

MAX_STEPS = 200  # every plan ends: a search halves its interval, a ramp stops at --step-max


@dataclass(frozen=True)
class StepSettings:
    """``start`` users, raised by ``size`` every ``hold_s`` seconds up to ``max_users``."""

    start: int = 5
    size: int = 5
    hold_s: float = 30.0
    max_users: int = 50
    spawn_rate: float = 0.0  # users per second; 0: one step per second
    search: bool = False
    resolution: int = 0  # search stops when passing and failing counts are this close

    @property
    def rate(self) -> float:
        return self.spawn_rate if self.spawn_rate > 0 else float(max(self.size, 1))

    @property
    def precision(self) -> int:
        return self.resolution if self.resolution > 0 else max(1, self.size // 4)

    def ramp_timeout_s(self, users: int, previous: int) -> float:
        return 10.0 + 3.0 * abs(users - previous) / self.rate


@dataclass
class StepRecord:
    step: int
    users: int
    start: float
    hold_start: float | None = None
    end: float | None = None
    verdict: str = ""
    breaches: str = ""

    def row(self) -> list[Any]:
        return [self.step, self.users, self.start, self.hold_start, self.end, self.verdict]


@dataclass
class StepPlan:
    """The users each tick asks for, from the settings and (when searching) each verdict."""

    settings: StepSettings
    steps: list[StepRecord] = field(default_factory=list)
    passing: int | None = None  # largest user count that kept the SLO
    failing: int | None = None  # smallest user count that broke it
    done: bool = False

    @property
    def current(self) -> StepRecord | None:
        return self.steps[-1] if self.steps else None

    def tick(
        self,
        now: float,
        running: int,
        judge: Callable[[StepRecord], list[str]] | None = None,
    ) -> tuple[int, float] | None:
        """(users, spawn rate) to run now, or None when the plan is over."""
        if self.done:
            return None
        step = self.current
        if step is None:
            step = self._begin(self.settings.start, now)
        if step.hold_start is None:
            previous = self.steps[-2].users if len(self.steps) > 1 else 0
            if running == step.users or now - step.start >= self.settings.ramp_timeout_s(
                step.users, previous
            ):
                step.hold_start = now
            return step.users, self.settings.rate
        if now - step.hold_start < self.settings.hold_s:
            return step.users, self.settings.rate
        step.end = now
        breaches = judge(step) if (judge is not None and self.settings.search) else []
        if self.settings.search:
            step.verdict = "breach" if breaches else "ok"
            step.breaches = "; ".join(breaches)
        following = self._next(step.users, bool(breaches))
        if following is None or len(self.steps) >= MAX_STEPS:
            self.done = True
            return None
        return self._begin(following, now).users, self.settings.rate

    def _begin(self, users: int, now: float) -> StepRecord:
        step = StepRecord(step=len(self.steps) + 1, users=users, start=now)
        self.steps.append(step)
        return step

    def _next(self, users: int, breached: bool) -> int | None:
        s = self.settings
        if not s.search:
            following = users + s.size
            return following if following <= s.max_users else None
        if breached:
            self.failing = users if self.failing is None else min(self.failing, users)
        else:
            self.passing = users if self.passing is None else max(self.passing, users)
        if self.failing is None:  # still raising
            following = users + s.size
            return following if following <= s.max_users else None
        low = self.passing or 0
        if self.failing - low <= s.precision:
            return None
        following = (low + self.failing) // 2
        return following if low < following < self.failing else None


def histogram_percentile(histogram: Mapping[int, int], q: float) -> float:
    """The q-quantile of a Locust response-time histogram (rounded ms -> count)."""
    total = sum(histogram.values())
    if total <= 0:
        return math.nan
    rank = q * total
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


class StatsWindow:
    """Locust stats since a step began: p95s and failure rate from counter differences."""

    def __init__(self, stats: Any, request_type: str) -> None:
        self.stats = stats
        self.request_type = request_type
        self.base: dict[str, tuple[int, int, dict[int, int]]] = {}

    def _now(self) -> dict[str, tuple[int, int, dict[int, int]]]:
        out = {}
        for name in {*LIMITED_NAMES, *RATED_NAMES}:
            entry = self.stats.entries.get((name, self.request_type))
            if entry is not None:
                out[name] = (entry.num_requests, entry.num_failures, dict(entry.response_times))
        return out

    def restart(self) -> None:
        self.base = self._now()

    def judge(self, slo: SLO) -> list[str]:
        now = self._now()
        p95: dict[str, float] = {}
        requests = failures = 0
        for name, (count, failed, histogram) in now.items():
            base_count, base_failed, base_hist = self.base.get(name, (0, 0, {}))
            diff = {k: v - base_hist.get(k, 0) for k, v in histogram.items()}
            p95[name] = histogram_percentile({k: v for k, v in diff.items() if v > 0}, 0.95)
            if name in RATED_NAMES:
                requests += count - base_count
                failures += failed - base_failed
        rate = failures / requests if requests else math.nan
        return slo.breaches(p95, rate)


def write_steps(folder: Path, steps: list[StepRecord]) -> None:
    """Rewrite ``steps.csv`` whole and atomically: it is small and must never be torn."""
    tmp = folder / (STEPS_FILE + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(STEP_COLUMNS)
        for step in steps:
            writer.writerow([*step.row(), step.breaches])
    tmp.replace(folder / STEPS_FILE)
