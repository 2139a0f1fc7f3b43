"""Service levels a load step must keep, shared by the capacity load shape and the report.

Pure (no pandas, no Locust) so the Locust process that searches for capacity judges a step
with exactly the rule the report later applies to the raw samples. The ``--slo-*`` options
are declared here, beside the fields they fill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from wsload.config.spec import OptionSpec

#: stats names whose p95 the SLO limits, and the SLO field that holds each limit
LIMITED_NAMES = {
    "turn:e2e": "e2e_p95_ms",
    "connect": "connect_p95_ms",
    "auth": "auth_p95_ms",
    "turn:ttft": "ttft_p95_ms",  # streamed answers; 0: no limit
    "turn:itl": "itl_p95_ms",
}
#: names whose failures count in the failure rate (one per turn, connect and auth attempt)
RATED_NAMES = ("connect", "auth", "turn:e2e")


@dataclass(frozen=True)
class SLO:
    """Per-step limits: p95 latencies in ms and the failed share of attempts (0..1).

    The streamed-answer limits (time to first token, inter-token latency) are 0, no limit,
    unless given: a backend that does not stream has no such samples."""

    e2e_p95_ms: float = 5000.0
    connect_p95_ms: float = 500.0
    auth_p95_ms: float = 500.0
    failure_rate: float = 0.01
    ttft_p95_ms: float = 0.0
    itl_p95_ms: float = 0.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None, **overrides: Any) -> SLO:
        """The SLO a run was made with (``run.json`` options), then explicit overrides."""
        values: dict[str, float] = {}
        for option in SLO_OPTIONS:
            value = (options or {}).get(option.dest)
            if value is not None:
                values[option.field] = float(value)
        values.update({k: float(v) for k, v in overrides.items() if v is not None})
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        streamed = "".join(
            f", p95 {name} ≤ {limit:g} ms"
            for name, limit in (("turn:ttft", self.ttft_p95_ms), ("turn:itl", self.itl_p95_ms))
            if limit > 0
        )
        return (
            f"p95 turn:e2e ≤ {self.e2e_p95_ms:g} ms, p95 connect ≤ {self.connect_p95_ms:g} ms, "
            f"p95 auth ≤ {self.auth_p95_ms:g} ms{streamed}, failure rate ≤ {self.failure_rate:.1%}"
        )

    def breaches(self, p95_ms: Mapping[str, float], failure_rate: float) -> list[str]:
        """What a step broke, e.g. ``["turn:e2e p95 812 ms > 500 ms"]``; empty when it held.

        A name without samples in the step (NaN or missing) breaks nothing: a step that
        only lowers the user count opens no sessions, so it has no connect latency.
        """
        out = []
        for name, field in LIMITED_NAMES.items():
            value = p95_ms.get(name, math.nan)
            limit = getattr(self, field)
            if limit <= 0 and name not in _ALWAYS_LIMITED:
                continue  # a streamed-answer limit left at 0: none
            if value is not None and not math.isnan(value) and value > limit:
                out.append(f"{name} p95 {value:.0f} ms > {limit:g} ms")
        if (
            failure_rate is not None
            and not math.isnan(failure_rate)
            and failure_rate > self.failure_rate
        ):
            out.append(f"failure rate {failure_rate:.1%} > {self.failure_rate:.1%}")
        return out


_ALWAYS_LIMITED = ("turn:e2e", "connect", "auth")


def _slo(flag: str, env: str, field: str, help: str) -> OptionSpec:
    return OptionSpec(
        flag, env, help, getattr(SLO(), field), float, group="slo", field=field, metavar="MS"
    )


#: ``--slo-*``: Locust options of the capacity locustfile and ``wsload report`` overrides.
#: Their help has no percent sign: ``wsload report`` escapes it itself.
SLO_OPTIONS: tuple[OptionSpec, ...] = (
    _slo("--slo-e2e-p95", "WSLOAD_SLO_E2E_P95", "e2e_p95_ms", "largest p95 of turn:e2e, ms"),
    _slo(
        "--slo-connect-p95",
        "WSLOAD_SLO_CONNECT_P95",
        "connect_p95_ms",
        "largest p95 of connect, ms",
    ),
    _slo("--slo-auth-p95", "WSLOAD_SLO_AUTH_P95", "auth_p95_ms", "largest p95 of auth, ms"),
    _slo(
        "--slo-ttft-p95",
        "WSLOAD_SLO_TTFT_P95",
        "ttft_p95_ms",
        "largest p95 of turn:ttft (streamed answers), ms; 0: no limit",
    ),
    _slo(
        "--slo-itl-p95",
        "WSLOAD_SLO_ITL_P95",
        "itl_p95_ms",
        "largest p95 of turn:itl, every gap between token events, ms; 0: no limit",
    ),
    OptionSpec(
        "--slo-failure-rate",
        "WSLOAD_SLO_FAILURE_RATE",
        "largest failed share of connects, auths and turns (0.01: one in a hundred)",
        SLO().failure_rate,
        float,
        group="slo",
        field="failure_rate",
        metavar="SHARE",
    ),
)
