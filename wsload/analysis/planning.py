"""Capacity maths: per-step service levels, a Universal Scalability Law fit, the knee, the
largest load that keeps the SLO, and how many instances a target user count needs.

USL (Gunther): ``X(N) = lambda*N / (1 + sigma*(N-1) + kappa*N*(N-1))`` with lambda the
throughput of one user alone, sigma the contention (serialised work) and kappa the
coherency (crosstalk) cost. sigma = kappa = 0 is linear scaling; kappa > 0 gives a peak at
``N* = sqrt((1 - sigma) / kappa)`` after which more users bring less throughput.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .run import Run
from .slo import LIMITED_NAMES, RATED_NAMES, SLO
from .stats import (
    GROWTH_STAGES,
    OPENING,
    Growth,
    fmt_ms,
    health_warnings,
    latency_growth,
    step_percentiles,
)
from .table_run import is_table_run

LAMBDA, SIGMA, KAPPA = "\u03bb", "\u03c3", "\u03ba"  # escaped: ruff flags look-alike letters


def usl(n: np.ndarray | float, lam: float, sigma: float, kappa: float) -> np.ndarray:
    """USL throughput at ``n`` users."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


@dataclass(frozen=True)
class UslFit:
    """A fitted USL curve and how well it matches the points it came from."""

    lam: float
    sigma: float
    kappa: float
    r2: float
    points: int

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        return usl(n, self.lam, self.sigma, self.kappa)

    @property
    def peak_users(self) -> float:
        """Users at the throughput peak; infinite without (noticeable) coherency cost."""
        if self.kappa <= 1e-12:
            return math.inf
        return math.sqrt(max(1.0 - self.sigma, 0.0) / self.kappa)

    @property
    def peak_throughput(self) -> float:
        peak = self.peak_users
        return float(self.predict(peak)) if math.isfinite(peak) else math.inf

    @property
    def ceiling(self) -> float:
        """Most throughput the curve reaches: its peak, else the contention limit lambda/sigma."""
        if math.isfinite(self.peak_users):
            return self.peak_throughput
        return self.lam / self.sigma if self.sigma > 0 else math.inf

    @property
    def knee_users(self) -> float:
        """Where linear scaling (λN) would reach the throughput ceiling: the bound-analysis
        knee. Below it users mostly add throughput; above it they mostly add waiting."""
        if self.lam <= 0:
            return math.inf
        return max(self.ceiling / self.lam, 1.0)

    @property
    def exact(self) -> bool:
        """Three parameters through three points always fit: no evidence of the shape."""
        return self.points <= 3

    def describe(self) -> str:
        return (
            f"{LAMBDA} = {_g(self.lam)} turns/s per user, {SIGMA} = {_g(self.sigma)}, "
            f"{KAPPA} = {_g(self.kappa)}, "
            f"R² = {self.r2:.3f} ({self.points} steps)"
        )


def _g(value: float) -> str:
    """Three significant digits; numerically-zero fit parameters shown as 0."""
    return "0" if abs(value) < 1e-9 else f"{value:.3g}"


def fit_usl(users: np.ndarray, throughput: np.ndarray) -> UslFit | None:
    """Least-squares USL fit (sigma, kappa in [0, 1], lambda >= 0); None with fewer than 3
    user counts.

    Started from several (sigma, kappa) guesses and the best kept, because the error
    surface is flat along sigma/kappa trade-offs and one start can stop in a poor valley.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    n = np.asarray(users, dtype=float)
    x = np.asarray(throughput, dtype=float)
    keep = np.isfinite(n) & np.isfinite(x) & (n > 0)
    n, x = n[keep], x[keep]
    if len(np.unique(n)) < 3:
        return None
    lam0 = float(np.max(x / n))
    if lam0 <= 0:
        return None
    best: tuple[float, np.ndarray] | None = None
    for sigma0 in (0.0, 0.05, 0.3):
        for kappa0 in (0.0, 1e-4, 1e-2):
            try:
                with warnings.catch_warnings():  # an exact fit has no covariance: fine here
                    warnings.simplefilter("ignore", OptimizeWarning)
                    params, _ = curve_fit(
                        usl,
                        n,
                        x,
                        p0=[lam0, sigma0, kappa0],
                        bounds=([0.0, 0.0, 0.0], [np.inf, 1.0, 1.0]),
                        x_scale=[lam0, 0.1, 1e-3],
                        max_nfev=5000,
                    )
            except (RuntimeError, ValueError):
                continue
            sse = float(np.sum((usl(n, *params) - x) ** 2))
            if best is None or sse < best[0]:
                best = (sse, params)
    if best is None:
        return None
    sse, (lam, sigma, kappa) = best
    total = float(np.sum((x - x.mean()) ** 2))
    r2 = 1.0 - sse / total if total > 0 else (1.0 if sse == 0 else 0.0)
    return UslFit(float(lam), float(sigma), float(kappa), float(r2), len(n))


def step_table(run: Run, slo: SLO) -> pd.DataFrame:
    """One row per load step: users, throughput, goodput, p95s, failure rates, SLO verdict.

    Throughput counts turns that ended during the step's hold (any verdict) per second;
    goodput only those that succeeded within the e2e limit. Latencies and failure rates
    take the samples that ended during the hold, plus the connects and auths of the ramp
    (new users open their sessions then).
    """
    steps = run.steps
    columns = [
        "step",
        "users",
        "hold_s",
        "turns",
        "throughput_tps",
        "goodput_tps",
        "connect_p95_ms",
        "auth_p95_ms",
        "ttfe_p95_ms",
        "e2e_p50_ms",
        "e2e_p95_ms",
        "e2e_p99_ms",
        "attempts",
        "failure_rate",
        "auth_failure_rate",
        "meets_slo",
        "breaches",
        "verdict",
        "generator_saturated",
    ]
    if steps.empty:
        return pd.DataFrame(columns=columns)
    warnings = health_warnings(run)
    percentiles = step_percentiles(run, names=["connect", "auth", "turn:ttfe", "turn:e2e"])
    by = percentiles.set_index(["step", "name"])
    attempts, failure_rate, auth_rate, held_count, good_count = _step_counts(run, slo)

    def pick(step_no: int, name: str, column: str) -> float:
        key = (step_no, name)
        return float(by.at[key, column]) if key in by.index else math.nan

    rows = []
    for step in steps.itertuples(index=False):
        number = int(step.step)
        hold_s = max(float(step.end - step.hold_start), 1e-9)
        turns = int(held_count.get(number, 0))
        rate = float(failure_rate.get(number, math.nan))
        p95 = {name: pick(number, name, "p95_ms") for name in LIMITED_NAMES}
        breaches = slo.breaches(p95, rate)
        if turns == 0:
            breaches.append("no turn completed")
        rows.append(
            {
                "step": number,
                "users": int(step.users),
                "hold_s": hold_s,
                "turns": turns,
                "throughput_tps": turns / hold_s,
                "goodput_tps": int(good_count.get(number, 0)) / hold_s,
                "connect_p95_ms": p95["connect"],
                "auth_p95_ms": p95["auth"],
                "ttfe_p95_ms": pick(number, "turn:ttfe", "p95_ms"),
                "e2e_p50_ms": pick(number, "turn:e2e", "p50_ms"),
                "e2e_p95_ms": p95["turn:e2e"],
                "e2e_p99_ms": pick(number, "turn:e2e", "p99_ms"),
                "attempts": int(attempts.get(number, 0)),
                "failure_rate": rate,
                "auth_failure_rate": float(auth_rate.get(number, math.nan)),
                "meets_slo": not breaches,
                "breaches": "; ".join(breaches),
                "verdict": step.verdict,
                "generator_saturated": _saturated(warnings, step, run.started),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _step_counts(run: Run, slo: SLO) -> tuple[pd.Series, ...]:
    """Per step: attempts and failure rate of the rated names, auth failure rate, turns
    that ended in the hold and those within the e2e limit."""
    if is_table_run(run):
        from .sql_stats import step_counts

        frame = step_counts(run, list(RATED_NAMES), slo.e2e_p95_ms)
        rated, auths = frame.loc[frame["attempts"] > 0], frame.loc[frame["auths"] > 0]
        return (
            frame["attempts"],
            rated["failed"] / rated["attempts"],
            auths["auth_failed"] / auths["auths"],
            frame["turns"],
            frame["good"],
        )
    samples = run.samples
    counted = samples.loc[
        samples["step"].notna() & (samples["in_hold"] | samples["name"].isin(OPENING))
    ]
    rated = counted.loc[counted["name"].isin(RATED_NAMES)]
    attempts = rated.groupby("step").size()
    failure_rate = (~rated["ok"]).groupby(rated["step"]).mean()
    auth = counted.loc[counted["name"] == "auth"]
    auth_rate = (~auth["ok"]).groupby(auth["step"]).mean()
    held = run.turns.loc[run.turns["in_hold"]]
    good = held["ok"].astype(bool) & (held["e2e_ms"] <= slo.e2e_p95_ms)
    held_count = held.groupby("step").size()
    good_count = good.groupby(held["step"]).sum()
    return attempts, failure_rate, auth_rate, held_count, good_count


def _saturated(warnings: pd.DataFrame, step: Any, origin: float) -> bool:
    """Whether a generator-health warning overlaps the step."""
    if warnings.empty:
        return False
    start, end = step.start - origin, step.end - origin
    return bool(((warnings["t_s"] < end) & (warnings["end_s"] > start)).any())


@dataclass(frozen=True)
class Capacity:
    """What a stepped run says about one instance, and what a target load would need.

    The statement keeps three kinds of claim apart: what a step measured, what is only a
    bound (no step broke the SLO, so the limit was not reached) and what the USL fit
    extrapolates beyond the largest step. A projection is made from a measured limit only.
    """

    slo: SLO
    steps: pd.DataFrame
    fit: UslFit | None
    max_users: int | None  # largest user count that, with every smaller one, met the SLO
    first_breach_users: int | None
    first_breach: str  # what broke there
    knee_users: float | None
    target_users: int | None
    instances: int | None  # only from a measured limit (a step met the SLO, a larger broke it)
    headroom: float
    assumptions: list[str] = field(default_factory=list)
    growth: list[Growth] = field(default_factory=list)  # steep p95 growth between steps

    @property
    def lower_bound(self) -> bool:
        """True when no step broke the SLO: the instance carries at least ``max_users``."""
        return self.max_users is not None and self.first_breach_users is None

    @property
    def measured_limit(self) -> bool:
        """True when a user count met the SLO and the next larger one broke it."""
        return self.max_users is not None and self.first_breach_users is not None

    @property
    def largest_users(self) -> int | None:
        """The largest user count tested; the fit is extrapolated beyond it."""
        return int(self.steps["users"].max()) if len(self.steps) else None

    @property
    def knee_extrapolated(self) -> bool:
        """True when the fitted knee lies beyond the largest step: a guess, not a finding."""
        largest, knee = self.largest_users, self.knee_users
        return largest is not None and knee is not None and knee > largest

    @property
    def headline(self) -> str:
        """The one sentence on the per-instance limit (measured, bound, or below all steps)."""
        if self.steps.empty:
            return "No load step was found in this run, so there is no capacity."
        if self.max_users is None:
            return (
                f"Measured: no step met the SLO; the smallest, {_users(self.first_breach_users)}"
                f", broke it ({self.first_breach}). One instance carries fewer users than that."
            )
        if self.lower_bound:
            return (
                f"Bound, not a limit: one instance carries at least {_users(self.max_users)}: "
                "no step broke the SLO, so the real limit was not reached."
            )
        return (
            "Measured limit: the largest user count meeting the SLO is "
            f"{_users(self.max_users)} per instance ({self._p95s(self.max_users)}); the first "
            f"breach was at {_users(self.first_breach_users)} ({self.first_breach}), so the "
            "limit lies between the two."
        )

    def limit_text(self) -> str:
        """The per-instance limit in a few words, for comparisons."""
        if self.max_users is None:
            low = self.first_breach_users
            return f"none (below {_users(low)})" if low is not None else "none (no step)"
        if self.lower_bound:
            return f"at least {_users(self.max_users)} (no step broke the SLO)"
        return f"{_users(self.max_users)} (measured)"

    def warnings(self) -> list[str]:
        """Steep latency growth between consecutive steps, one sentence each."""
        return [g.sentence() for g in self.growth]

    def statement(self, with_warnings: bool = True) -> list[str]:
        """The capacity statement as sentences, for the report and notebooks; growth
        warnings (prefixed ``Warning:``) follow the limit unless ``with_warnings`` is off."""
        lines = [f"SLO per step: {self.slo.describe()}."]
        if self.steps.empty:
            return [*lines, self.headline]
        tested = sorted(int(u) for u in self.steps["users"].unique())
        lines.append(f"Steps tested (users): {', '.join(map(str, tested))}.")
        if self.lower_bound:
            lines.append(
                f"Measured: the largest step, {_users(self.max_users)}, met the SLO "
                f"({self._p95s(self.max_users)})."
            )
        lines.append(self.headline)
        if with_warnings:
            lines += [f"Warning: {w}" for w in self.warnings()]
        saturated = self.steps.loc[self.steps["generator_saturated"], "users"].tolist()
        if saturated:
            lines.append(
                "The load generator was saturated (CPU or event-loop lag) during the steps of "
                f"{', '.join(map(str, saturated))} users: their numbers partly measure it."
            )
        lines += self._fit_lines(max(tested))
        if self.target_users is not None:
            lines.append(self._projection())
        return lines

    def _projection(self) -> str:
        target = _users(self.target_users)
        if self.instances is not None:
            per = _per_instance(self.max_users or 0, self.headroom)
            return (
                f"For {target}: {self.instances} instance(s) ({self.target_users} / {per} "
                f"users per instance, from the measured limit of {_users(self.max_users)}, "
                "rounded up"
                + (f", {self.headroom:.0%} headroom kept" if self.headroom else "")
                + ")."
            )
        if self.max_users is None:
            return (
                f"No instance projection for {target}: no step met the SLO, so the "
                "per-instance limit lies below the smallest step; measure it with smaller "
                "steps (a lower --step-start of locustfiles/capacity.py)."
            )
        return (
            f"No instance projection for {target}: the per-instance limit was not "
            f"measured (no step broke the SLO, so {_users(self.max_users)} is only a lower "
            "bound). To measure it, run larger steps until one breaks the SLO: raise "
            "--step-max (and --step-size) of locustfiles/capacity.py, or add --step-search "
            "to raise the load until a breach and then narrow down to the limit."
        )

    def _p95s(self, users: int | None) -> str:
        """The measured p95s of the steps at ``users`` (their worst, if several)."""
        rows = self.steps.loc[self.steps["users"] == users]
        parts = []
        for stage, column in GROWTH_STAGES.items():
            value = float(rows[column].max()) if column in rows and len(rows) else math.nan
            if math.isfinite(value):
                parts.append(f"{stage} {fmt_ms(value)} ms")
        return "p95 " + ", ".join(parts) if parts else "no p95 measured"

    def _fit_lines(self, largest: int) -> list[str]:
        fit = self.fit
        if fit is None:
            return ["No USL fit: it needs at least three different user counts."]
        lines = [f"USL fit of throughput against users: {fit.describe()}."]
        if fit.exact:
            lines.append(
                "Three steps give an exact fit of three parameters: read the knee and the "
                "peak as rough indications; more steps make them trustworthy."
            )
        beyond = f"extrapolated beyond the largest step ({largest} users)"
        ceiling = (
            f"{fit.ceiling:.1f} turns/s" if math.isfinite(fit.ceiling) else "no finite ceiling"
        )
        knee = self.knee_users
        if knee is not None and math.isfinite(knee) and knee > largest:
            lines.append(
                f"Knee ≈ {_users(round(knee))}, {beyond}, not measured: only where the fit "
                f"would have linear scaling reach its throughput ceiling ({ceiling})."
            )
        elif knee is not None and math.isfinite(knee):
            where = f", {beyond}" if fit.peak_users > largest else ""
            lines.append(
                f"Knee ≈ {_users(round(knee))} (fitted, within the tested range): there linear "
                f"scaling would reach the fitted throughput ceiling ({ceiling}{where}); beyond "
                "it more users mostly add waiting, not throughput."
            )
        else:
            lines.append("No knee: the fitted throughput scales linearly.")
        if math.isfinite(fit.peak_users):
            peak = f"≈ {fit.peak_throughput:.1f} turns/s near {fit.peak_users:.0f} users"
            if fit.peak_users > largest:
                lines.append(f"Throughput peak {peak}, {beyond}, not measured.")
            else:
                lines.append(
                    f"Throughput peaks at {peak} (fitted, within the tested range) and falls "
                    "past it."
                )
        return lines


def _users(count: int | None) -> str:
    return f"{count} user" if count == 1 else f"{count} users"


def _per_instance(max_users: int, headroom: float) -> int:
    return max(math.floor(max_users * (1.0 - headroom)), 1)


def capacity(
    run: Run,
    slo: SLO | None = None,
    target_users: int | None = None,
    headroom: float = 0.0,
) -> Capacity:
    """The capacity statement of a run: SLO verdict per step, USL fit, knee, and a
    projection for ``target_users`` when a step broke the SLO (the limit was measured)."""
    slo = slo or SLO.from_options(run.options)
    steps = step_table(run, slo)
    max_users = first_breach_users = None
    first_breach = ""
    for users, group in steps.groupby("users", sort=True):
        if group["meets_slo"].all():
            max_users = int(users)
            continue
        first_breach_users = int(users)
        first_breach = "; ".join(b for b in group["breaches"] if b)
        break
    fit = fit_usl(steps["users"].to_numpy(), steps["throughput_tps"].to_numpy())
    knee = fit.knee_users if fit is not None else None
    instances = None
    if target_users is not None and max_users and first_breach_users is not None:
        instances = math.ceil(target_users / _per_instance(max_users, headroom))
    return Capacity(
        slo=slo,
        steps=steps,
        fit=fit,
        max_users=max_users,
        first_breach_users=first_breach_users,
        first_breach=first_breach,
        knee_users=knee,
        target_users=target_users,
        instances=instances,
        headroom=headroom,
        assumptions=assumptions(run, steps, headroom),
        growth=latency_growth(steps),
    )


def assumptions(run: Run, steps: pd.DataFrame, headroom: float) -> list[str]:
    """What the projection takes for granted; the report prints these beside the numbers."""
    options = run.options
    think = options.get("think_time")
    per_session = options.get("messages_per_session")
    hold = f"{steps['hold_s'].median():.0f} s" if len(steps) else "?"
    return [
        "Instances scale out linearly: nothing they share (database, cache, model quota, "
        "load balancer) adds contention that the single tested instance did not see.",
        "Users are spread evenly over instances (WebSocket sessions balanced by count).",
        "Traffic looks like this run's: think time "
        + (f"{think} s" if think is not None else "as configured")
        + ", "
        + (f"{per_session} messages per session" if per_session else "one long session per user")
        + ", the same message and protocol profile.",
        "Each instance runs on hardware and configuration like the tested one.",
        f"Each step held its load for about {hold}; the true limit lies between the largest "
        "passing step and the first failing one.",
        "The load generator was not the bottleneck (see the generator-health section).",
        "No headroom for failover or spikes is kept."
        if not headroom
        else f"{headroom:.0%} of each instance's capacity is kept as headroom.",
    ]
