"""The options of a capacity run (``--step-*``, ``--slo-*``), as declarations and as values.

Pure, like the step plan: the Locust options come from these rows, and the run's
configuration (``wsload.config.options.run_config``) turns their values into checked
``StepSettings`` and an ``SLO`` once per process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wsload.capacity.slo import SLO, SLO_OPTIONS
from wsload.capacity.step_plan import StepSettings
from wsload.config.spec import OptionSpec
from wsload.errors import ConfigError


def _step(flag: str, env: str, kind: type, default: Any, help: str, **kw: Any) -> OptionSpec:
    return OptionSpec(flag, env, help, default, kind, group="capacity", **kw)


STEP_SPECS: tuple[OptionSpec, ...] = (
    _step("--step-start", "WSLOAD_STEP_START", int, 5, "users of the first step"),
    _step("--step-size", "WSLOAD_STEP_SIZE", int, 5, "users added per step"),
    _step("--step-hold", "WSLOAD_STEP_HOLD", float, 30.0, "seconds each step holds its load"),
    _step("--step-max", "WSLOAD_STEP_MAX", int, 50, "most users a step may have"),
    _step(
        "--step-spawn-rate",
        "WSLOAD_STEP_SPAWN_RATE",
        float,
        0.0,
        "users started per second between steps (0: a step per second)",
    ),
    _step(
        "--step-resolution",
        "WSLOAD_STEP_RESOLUTION",
        int,
        0,
        "search stops when passing and failing loads are this many users apart (0: a quarter step)",
    ),
    _step(
        "--step-search",
        "WSLOAD_STEP_SEARCH",
        bool,
        False,
        "search for the largest load that keeps the SLO: raise until a breach, then narrow down",
        action="store_true",
    ),
)
#: every option of the capacity locustfile beyond the run and gate options
CAPACITY_SPECS: tuple[OptionSpec, ...] = STEP_SPECS + SLO_OPTIONS
#: options a zero is a meaningful value of
ZERO_OK = frozenset({"step_spawn_rate", "step_resolution", *(spec.dest for spec in SLO_OPTIONS)})


def step_settings(get: Callable[[str, Any], Any]) -> StepSettings:
    """Checked step settings from option values (``get(dest, default)``)."""
    settings = StepSettings(
        start=int(get("step_start", 5)),
        size=int(get("step_size", 5)),
        hold_s=float(get("step_hold", 30.0)),
        max_users=int(get("step_max", 50)),
        spawn_rate=float(get("step_spawn_rate", 0.0)),
        search=bool(get("step_search", False)),
        resolution=int(get("step_resolution", 0)),
    )
    if settings.start < 1 or settings.size < 1 or settings.hold_s <= 0:
        raise ConfigError(
            "--step-start, --step-size and --step-hold must be positive",
            fix="e.g. --step-start 5 --step-size 5 --step-hold 30",
        )
    if settings.max_users < settings.start:
        raise ConfigError(
            "--step-max must be at least --step-start", fix="raise --step-max or lower --step-start"
        )
    return settings


def slo(get: Callable[[str, Any], Any]) -> SLO:
    """The SLO from option values (``get(dest, default)``); unset options keep the defaults."""
    return SLO(**{spec.field: float(get(spec.dest, spec.default)) for spec in SLO_OPTIONS})
