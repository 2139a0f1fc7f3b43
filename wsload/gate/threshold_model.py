"""Gate thresholds' model: the metric vocabulary (stats names, groups, statistics, units,
taxonomy ids), ``Metric`` and ``Threshold``. ``thresholds.py`` parses text into them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from wsload import taxonomy
from wsload.errors import ConfigError

GOODPUT = "goodput"
TURN = "turn"
PROBE = "probe"
CONFORMANCE = "conformance"
ALL = "all"
GROUPS = (TURN, PROBE, CONFORMANCE, ALL)
TURN_NAME = "turn:e2e"
PROBE_PREFIX = "probe:"
CONFORMANCE_PREFIX = "conformance:"

TIME_STATS = ("min", "max", "mean")  # and pNN / pNN.N
OTHER_STATS = ("count", "failures", "failure_rate", "rate")
STAT_WORDS = (*TIME_STATS, *OTHER_STATS)
MARKERS = ("abort", "optional")
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
UNITS_BY_KIND = {"time": ("ms", "s"), "count": ("",), "share": ("%",), "rate": ("/s",)}
# Stats names whose values are not times: a streamed answer's output tokens (a count, no
# unit) and its tokens per second (``/s``); their percentiles take these units.
VALUE_UNITS = {"turn:output_tokens": "count", "turn:tokens_per_s": "rate"}
KIND_WORDS = {"time": "a time", "count": "a count", "share": "a share", "rate": "a rate"}
_UNIT_FACTOR = {"ms": Decimal(1), "s": Decimal(1000), "%": Decimal("0.01"), "/s": Decimal(1)}
_UNIT_FACTOR[""] = Decimal(1)

FAILURE_IDS = frozenset(
    value for key, value in vars(taxonomy).items() if key.isupper() and isinstance(value, str)
)
_PARAMETRISED_ID = re.compile(r"(?:http_\d{3}|closed_\d{4}|disconnected_\d{4})\Z", re.ASCII)
_AUTH_IDS = frozenset(
    {
        taxonomy.AUTH_REJECTED,
        taxonomy.AUTH_TIMEOUT,
        taxonomy.IDENTITY_MISMATCH,
        taxonomy.AUTH_MATERIAL_MISSING,
    }
)
_TURN_IDS = frozenset(
    {
        taxonomy.EVENT_TIMEOUT,
        taxonomy.SEQUENCE_MISSING,
        taxonomy.SEQUENCE_ORDER,
        taxonomy.SEQUENCE_DUPLICATE,
        taxonomy.AGENT_ERROR,
        taxonomy.FOREIGN_EVENT,
    }
)

PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)\Z", re.ASCII)


def is_failure_id(word: str) -> bool:
    """Whether ``word`` is a taxonomy id (``refused``, ``http_503``, ``closed_1008`` ...)."""
    return word in FAILURE_IDS or bool(_PARAMETRISED_ID.match(word))


def failure_stage(failure: str) -> str | None:
    """The stats name or group whose samples a failure id's failure rate is a share of."""
    if failure in taxonomy.CONNECT_FAILURES or failure.startswith("http_"):
        return "connect"
    if failure in _AUTH_IDS or failure.startswith("closed_"):
        return "auth"
    if failure in _TURN_IDS or failure.startswith("disconnected_"):
        return TURN
    if failure == taxonomy.AUTH_NOT_ENFORCED:
        return PROBE
    if failure == taxonomy.HANDSHAKE_NOT_CONFORMANT:
        return CONFORMANCE
    return None  # protocol_error: an auth frame or a session frame; the user says which


def format_decimal(value: Decimal) -> str:
    """Shortest plain text of a limit: ``5``, ``0.25``, never ``5.0`` or ``1E+1``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def is_percentile(stat: str) -> bool:
    return bool(PERCENTILE.match(stat))


@dataclass(frozen=True)
class Metric:
    """What a threshold measures: a selection of samples and a statistic over it."""

    scope: str | None  # stats name, group (turn, probe, all), goodput; None: every sample
    stat: str  # pNN, min, max, mean, count, failures, failure_rate, rate, share (goodput)
    failure: str | None = None  # only samples that failed with this taxonomy id

    @property
    def kind(self) -> str:
        """time, count, share or rate: decides the units the limit may take."""
        if is_percentile(self.stat) or self.stat in TIME_STATS:
            return "time"
        if self.stat in ("count", "failures"):
            return "count"
        if self.stat in ("failure_rate", "share"):
            return "share"
        return "rate"

    @property
    def unit_kind(self) -> str:
        """The kind whose units the limit takes: a time statistic of a name whose values are
        counts or rates (``turn:tokens_per_s p50 > 20/s``) takes theirs."""
        kind = self.kind
        if kind == "time" and self.scope in VALUE_UNITS:
            return VALUE_UNITS[self.scope]
        return kind

    @property
    def percentile(self) -> float | None:
        """The percent of a ``pNN`` statistic (95.0, 99.9), else None."""
        match = PERCENTILE.match(self.stat)
        return float(match.group(1)) if match else None

    @property
    def rate_scope(self) -> str | None:
        """The scope a failure rate is a share of (a failure id's stage when none given)."""
        if self.scope is None and self.failure is not None:
            return failure_stage(self.failure)
        return self.scope

    def __str__(self) -> str:
        if self.scope == GOODPUT:
            return GOODPUT if self.stat == "share" else f"{GOODPUT}.{self.stat}"
        if self.kind == "time":
            return f"{self.scope} {self.stat}"
        if self.failure is not None:
            if self.scope is None:
                return f"{self.failure}.{self.stat}"
            if self.stat == "count":
                return f"{self.scope}.{self.failure}"
            return f"{self.scope}.{self.failure}.{self.stat}"
        return f"{self.scope}.{self.stat}"


def scope_rule(scope: str | None) -> tuple[str | None, str | None]:
    """(exact stats name, name prefix) selecting a scope's samples; (None, None) is all."""
    if scope is None or scope == ALL:
        return None, None
    if scope == TURN:
        return TURN_NAME, None
    if scope == PROBE:
        return None, PROBE_PREFIX
    if scope == CONFORMANCE:
        return None, CONFORMANCE_PREFIX
    return scope, None


def abort_problem(metric: Metric, op: str) -> str | None:
    """Why ``abort`` cannot go on this threshold, or None when it can.

    Only thresholds that a running load can break for good are abortable: counts only
    grow (so ``<``, ``<=``, ``==`` break at the sample that exceeds them), a max only rises,
    a min only falls. Percentiles, means, shares and rates can recover until the end.
    """
    if metric.scope == GOODPUT:
        return "goodput is decided per turn over the whole run"
    if metric.kind == "count":
        if op in ("<", "<=", "=="):
            return None
        return f"a count only grows, so {op} cannot be decided before the run ends"
    if metric.stat == "max":
        return None if op in ("<", "<=") else f"a max only rises, so {op} waits for the end"
    if metric.stat == "min":
        return None if op in (">", ">=") else f"a min only falls, so {op} waits for the end"
    return f"{metric.stat} can change until the run ends"


@dataclass(frozen=True)
class Threshold:
    """One gate condition: ``metric op value unit`` plus its markers."""

    metric: Metric
    op: str
    value: Decimal
    unit: str  # "", "ms", "s", "%", "/s"
    abort: bool = False
    optional: bool = False
    description: str = field(default="", compare=False)
    origin: str = field(default="command line", compare=False)
    # A check wsload adds by itself (security defaults, run checks): when it measured
    # nothing it says so, but only a check the user asked for fails for that.
    implicit: bool = field(default=False, compare=False)
    label: str = field(default="", compare=False)  # e.g. "security: isolation"

    @property
    def limit(self) -> Fraction:
        """The limit in base units, exactly: ms, a fraction (not %), per second, a count."""
        return Fraction(self.value * _UNIT_FACTOR[self.unit])

    def holds(self, observed: float | Fraction | int) -> bool:
        """Whether ``observed`` (base units) meets the threshold.

        Counts and shares are exact fractions and compare exactly; measured floats compare
        with the limit rounded to the nearest float, so ``<= 100.123ms`` holds for a sample
        written as ``100.123``.
        """
        limit: float | Fraction = self.limit
        if isinstance(observed, float):
            limit = float(limit)
        return OPERATORS[self.op](observed, limit)

    @property
    def value_text(self) -> str:
        return f"{format_decimal(self.value)}{self.unit}"

    def __str__(self) -> str:
        markers = "".join(f" {m}" for m in MARKERS if getattr(self, m))
        return f"{self.metric} {self.op} {self.value_text}{markers}"


class ThresholdError(ConfigError):
    """A threshold that does not parse; ``position`` indexes the offending character."""

    def __init__(
        self, text: str, position: int, problem: str, *, origin: str = "", fix: str | None = None
    ) -> None:
        self.text = text
        self.position = position
        self.problem = problem
        shown = "".join(" " if c.isspace() else c for c in text)
        where = f" ({origin})" if origin else ""
        message = f"bad threshold{where}: {problem}\n    {shown}\n    {' ' * position}^"
        super().__init__(message, fix=fix)
