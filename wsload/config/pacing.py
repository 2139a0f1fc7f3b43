"""Think time between chat messages and reconnect backoff, as distributions.

A think time is given as text so it fits a command line, an environment variable and the
web UI alike: ``1.5`` or ``constant:1.5``, ``uniform:0.5:3``, ``exp:2`` (exponential with
that mean: a Poisson stream of messages per user).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from wsload.errors import ConfigError

_FORMS = "a number of seconds, constant:S, uniform:MIN:MAX or exp:MEAN"


@dataclass(frozen=True)
class ThinkTime:
    kind: str  # constant | uniform | exp
    a: float
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "exp":
            return rng.expovariate(1.0 / self.a) if self.a > 0 else 0.0
        return self.a

    @property
    def mean(self) -> float:
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a


def parse_think_time(text: str | float, option: str = "--think-time") -> ThinkTime:
    """Parse a think-time spec; ``ConfigError`` names the option and the accepted forms."""
    spec = str(text).strip()
    parts = spec.split(":")
    try:
        numbers = [float(p) for p in (parts[1:] if not _is_number(parts[0]) else parts)]
    except ValueError:
        raise ConfigError(
            f"{option} {spec!r} is not {_FORMS}", fix=f"e.g. {option} uniform:0.5:3"
        ) from None
    kind = "constant" if _is_number(parts[0]) else parts[0].lower()
    expected = {"constant": 1, "uniform": 2, "exp": 1, "exponential": 1}
    if kind not in expected or len(numbers) != expected[kind]:
        raise ConfigError(f"{option} {spec!r} is not {_FORMS}", fix=f"e.g. {option} uniform:0.5:3")
    if any(n < 0 for n in numbers) or (kind == "uniform" and numbers[0] > numbers[1]):
        raise ConfigError(
            f"{option} {spec!r} has a negative time or MIN above MAX",
            fix=f"e.g. {option} uniform:0.5:3",
        )
    kind = "exp" if kind == "exponential" else kind
    return ThinkTime(kind, numbers[0], numbers[1] if len(numbers) > 1 else 0.0)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, bounded by ``max_s``."""

    base_s: float = 0.5
    max_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0 = the first retry)."""
        ceiling = min(self.max_s, self.base_s * (2 ** min(attempt, 30)))
        return rng.uniform(0.0, ceiling)
