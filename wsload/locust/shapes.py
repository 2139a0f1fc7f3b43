"""Stepped load for capacity runs: raise users in steps, or search for the largest load that
keeps the service levels, and mark every step in the run folder (``steps.csv``).

The plan itself is pure (``wsload.capacity.step_plan``); ``SteppedShape`` drives it from Locust's
shape ticks and judges a step from Locust's own stats, which the master also has in
distributed runs. Options are Locust options (``--step-*``, ``--slo-*``; environment
variables ``WSLOAD_STEP_*``, ``WSLOAD_SLO_*``) and land in ``run.json``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events

from wsload.analysis.slo import SLO, SLO_OPTIONS
from wsload.capacity.step_plan import (
    StatsWindow,
    StepPlan,
    StepRecord,
    settings_from,
    slo_from,
    write_steps,
)

log = logging.getLogger("wsload.capacity")


def run_folder() -> Path | None:
    """The run folder the recorder writes to (None in processes that do not record)."""
    from wsload.locust.glue import run_folder as current

    return current()


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
            from wsload.locust.glue import REQUEST_TYPE

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
            help=f"SLO: {option.help} [{option.env}]".replace("%", "%%"),
        )
