"""Stepped load for capacity runs: raise users in steps, or search for the largest load that
keeps the service levels, and mark every step in the run folder (``steps.csv``).

The plan itself is pure (``wsload.capacity.step_plan``); ``SteppedShape`` drives it from Locust's
shape ticks and judges a step from Locust's own stats, which the master also has in
distributed runs. Its options (``--step-*``, ``--slo-*``; environment variables
``WSLOAD_STEP_*``, ``WSLOAD_SLO_*``) are declared in ``wsload.capacity.options``, registered
with every other wsload option and read from the run's configuration; they land in
``run.json``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from locust import LoadTestShape, events

from wsload.capacity.slo import SLO
from wsload.capacity.step_plan import StatsWindow, StepPlan, StepRecord, write_steps
from wsload.config.options import run_config
from wsload.errors import EXIT_CONFIG_ERROR, ConfigError
from wsload.locust.lifecycle import run_folder
from wsload.locust.stats import REQUEST_TYPE

log = logging.getLogger("wsload.capacity")


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
            config = run_config(environment.parsed_options)
            self.plan = StepPlan(config.steps)
            self.slo = config.slo
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
        run_config(environment.parsed_options)
    except ConfigError as error:
        print(f"wsload: error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CONFIG_ERROR)
