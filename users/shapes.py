"""Stepped load for capacity runs: raise users in steps, or search for the largest load that
keeps the service levels, and mark every step in the run folder (``steps.csv``).

``StepPlan`` is the pure part (no Locust, no clock: it is handed the time, the running user
count and a judge), so the search is tested without a load; ``SteppedShape`` drives it from
Locust's shape ticks and judges a step from Locust's own stats, which the master also has
in distributed runs. Options are Locust options (``--step-*``, ``--slo-*``; environment
variables ``WSLOAD_STEP_*``, ``WSLOAD_SLO_*``) and land in ``run.json``.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events

from wsload.analysis.slo import LIMITED_NAMES, RATED_NAMES, SLO, SLO_OPTIONS
from wsload.analysis.steps import STEP_COLUMNS, STEPS_FILE

log = logging.getLogger("wsload.capacity")
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


def settings_from(options: Any) -> StepSettings:
    """Settings from Locust's parsed options (``--step-*``), checked."""
    get = lambda name, default: getattr(options, name, None) or default  # noqa: E731
    settings = StepSettings(
        start=int(get("step_start", 5)),
        size=int(get("step_size", 5)),
        hold_s=float(get("step_hold", 30.0)),
        max_users=int(get("step_max", 50)),
        spawn_rate=float(get("step_spawn_rate", 0.0)),
        search=bool(getattr(options, "step_search", False)),
        resolution=int(get("step_resolution", 0)),
    )
    if settings.start < 1 or settings.size < 1 or settings.hold_s <= 0:
        raise ValueError("--step-start, --step-size and --step-hold must be positive")
    if settings.max_users < settings.start:
        raise ValueError("--step-max must be at least --step-start")
    return settings


def slo_from(options: Any) -> SLO:
    return SLO.from_options(vars(options) if options is not None else {})


def _percentile(histogram: Mapping[int, int], q: float) -> float:
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
            p95[name] = _percentile({k: v for k, v in diff.items() if v > 0}, 0.95)
            if name in RATED_NAMES:
                requests += count - base_count
                failures += failed - base_failed
        rate = failures / requests if requests else math.nan
        return slo.breaches(p95, rate)


def run_folder() -> Path | None:
    """The run folder the recorder writes to (None in processes that do not record)."""
    from wsload import locust_glue

    public = getattr(locust_glue, "run_folder", None)
    if callable(public):
        return public()
    recorder = getattr(getattr(locust_glue, "_state", None), "recorder", None)
    return getattr(recorder, "folder", None)


def write_steps(folder: Path, steps: list[StepRecord]) -> None:
    """Rewrite ``steps.csv`` whole and atomically: it is small and must never be torn."""
    tmp = folder / (STEPS_FILE + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(STEP_COLUMNS)
        for step in steps:
            writer.writerow([*step.row(), step.breaches])
    tmp.replace(folder / STEPS_FILE)


class SteppedShape(LoadTestShape):
    """Locust load shape of a capacity run; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.plan: StepPlan | None = None
        self.slo = SLO()
        self.window: StatsWindow | None = None
        self._seen_step = 0
        self._written = 0

    def tick(self) -> tuple[int, float] | None:
        environment = self.runner.environment
        if self.plan is None:
            options = environment.parsed_options
            self.plan = StepPlan(settings_from(options))
            self.slo = slo_from(options)
            from wsload.locust_glue import REQUEST_TYPE

            self.window = StatsWindow(environment.stats, REQUEST_TYPE)
        answer = self.plan.tick(time.time(), self.runner.user_count, self._judge)
        step = self.plan.current
        if step is not None and step.step != self._seen_step:
            self._seen_step = step.step
            self.window.restart()
            log.info("capacity: step %d, %d users", step.step, step.users)
        self._mark()
        if answer is None:
            self._announce()
        return answer

    def _judge(self, step: StepRecord) -> list[str]:
        breaches = self.window.judge(self.slo)
        log.info(
            "capacity: step %d (%d users) %s",
            step.step,
            step.users,
            "; ".join(breaches) or "kept the SLO",
        )
        return breaches

    def _mark(self) -> None:
        ended = [s for s in self.plan.steps if s.end is not None]
        if len(ended) == self._written:
            return
        folder = run_folder()
        if folder is not None:
            write_steps(folder, ended)
        self._written = len(ended)

    def _announce(self) -> None:
        plan = self.plan
        if plan.settings.search:
            print(
                f"wsload capacity search: largest passing load {plan.passing or 0} users, "
                f"first breach at {plan.failing if plan.failing is not None else 'none'} "
                f"({self.slo.describe()})",
                flush=True,
            )


@events.init.add_listener
def _check_options(environment: Any, **_: Any) -> None:
    """Bad step options stop the run before any user starts, like every wsload option."""
    if not isinstance(environment.shape_class, SteppedShape):
        return
    try:
        settings_from(environment.parsed_options)
    except ValueError as error:
        print(f"wsload: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    defaults = SLO()
    specs = [
        ("--step-start", "WSLOAD_STEP_START", int, 5, "users of the first step"),
        ("--step-size", "WSLOAD_STEP_SIZE", int, 5, "users added per step"),
        ("--step-hold", "WSLOAD_STEP_HOLD", float, 30.0, "seconds each step holds its load"),
        ("--step-max", "WSLOAD_STEP_MAX", int, 50, "most users a step may have"),
        (
            "--step-spawn-rate",
            "WSLOAD_STEP_SPAWN_RATE",
            float,
            0.0,
            "users started per second between steps (0: a step per second)",
        ),
        (
            "--step-resolution",
            "WSLOAD_STEP_RESOLUTION",
            int,
            0,
            "search stops when passing and failing loads are this many users apart "
            "(0: a quarter step)",
        ),
    ]
    for flag, env, kind, default, text in specs:
        parser.add_argument(flag, type=kind, default=default, env_var=env, help=f"{text} [{env}]")
    parser.add_argument(
        "--step-search",
        action="store_true",
        default=False,
        env_var="WSLOAD_STEP_SEARCH",
        help="search for the largest load that keeps the SLO: raise until a breach, then "
        "narrow down [WSLOAD_STEP_SEARCH]",
    )
    for option in SLO_OPTIONS:
        parser.add_argument(
            option.flag,
            type=float,
            default=getattr(defaults, option.field),
            env_var=option.env,
            help=f"SLO: {option.help} [{option.env}]",
        )
