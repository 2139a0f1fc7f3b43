"""Capacity maths: the USL fit recovers known parameters, the knee and peak follow from
them, the SLO verdict per step, the capacity statement and projection, and the step plan
of the capacity load shape (raise in steps, search for the largest passing load)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from wsload_runs import ORIGIN, usl_run, usl_throughput

from wsload import analysis as wa
from wsload.capacity.step_plan import StepPlan, StepSettings, histogram_percentile

KNOWN = [
    (2.0, 0.05, 0.001),
    (0.8, 0.03, 0.0008),
    (5.0, 0.1, 0.0002),
    (1.0, 0.05, 0.002),
]


@pytest.mark.parametrize(("lam", "sigma", "kappa"), KNOWN)
def test_usl_fit_recovers_known_parameters_within_10_percent(lam, sigma, kappa):
    rng = np.random.default_rng(42)
    users = np.arange(5, 105, 5)
    throughput = usl_throughput(users, lam, sigma, kappa) * (1 + rng.normal(0, 0.01, len(users)))
    fit = wa.fit_usl(users, throughput)
    assert fit is not None and fit.r2 > 0.99
    assert fit.lam == pytest.approx(lam, rel=0.10)
    assert fit.sigma == pytest.approx(sigma, rel=0.10)
    assert fit.kappa == pytest.approx(kappa, rel=0.10)


def test_usl_fit_recovers_parameters_from_a_synthetic_stepped_run(tmp_path):
    lam, sigma, kappa = 0.8, 0.03, 0.0008
    users = list(range(5, 85, 5))
    run = wa.load_run(
        usl_run(tmp_path / "run", lam=lam, sigma=sigma, kappa=kappa, users=users, noise=0.01)
    )
    cap = wa.capacity(run, wa.SLO(e2e_p95_ms=60_000))
    assert cap.steps["users"].tolist() == users
    fit = cap.fit
    assert fit.lam == pytest.approx(lam, rel=0.10)
    assert fit.sigma == pytest.approx(sigma, rel=0.10)
    assert fit.kappa == pytest.approx(kappa, rel=0.10)
    assert fit.points == len(users) and fit.r2 > 0.98


def test_peak_and_knee_follow_from_the_parameters():
    fit = wa.UslFit(lam=2.0, sigma=0.05, kappa=0.001, r2=1.0, points=10)
    assert fit.peak_users == pytest.approx(math.sqrt(0.95 / 0.001))
    assert fit.peak_throughput == pytest.approx(float(wa.usl(fit.peak_users, 2.0, 0.05, 0.001)))
    assert fit.knee_users == pytest.approx(fit.peak_throughput / 2.0)
    amdahl = wa.UslFit(lam=1.0, sigma=0.1, kappa=0.0, r2=1.0, points=10)
    assert math.isinf(amdahl.peak_users)
    assert amdahl.knee_users == pytest.approx(10.0)  # ceiling lambda/sigma reached by lambda*N
    linear = wa.UslFit(lam=1.0, sigma=0.0, kappa=0.0, r2=1.0, points=10)
    assert math.isinf(linear.knee_users)


def test_the_fit_needs_three_different_user_counts():
    assert wa.fit_usl(np.array([5, 5, 10, 10]), np.array([1.0, 1.1, 2.0, 2.1])) is None
    assert wa.fit_usl(np.array([5, 10, 15]), np.array([1.0, 2.0, 2.9])) is not None


def test_slo_names_every_limit_a_step_broke():
    slo = wa.SLO(e2e_p95_ms=500, connect_p95_ms=100, auth_p95_ms=100, failure_rate=0.01)
    assert slo.breaches({"turn:e2e": 400, "connect": 50, "auth": 20}, 0.0) == []
    assert slo.breaches({"turn:e2e": 812, "connect": math.nan}, 0.05) == [
        "turn:e2e p95 812 ms > 500 ms",
        "failure rate 5.0% > 1.0%",
    ]
    from_run = wa.SLO.from_options({"slo_e2e_p95": 900.0, "slo_failure_rate": None}, auth_p95_ms=7)
    assert (from_run.e2e_p95_ms, from_run.auth_p95_ms, from_run.failure_rate) == (900, 7, 0.01)


def test_capacity_statement_names_the_largest_passing_step_and_projects_instances(tmp_path):
    # e2e = N / X(N) - 1 s: 1.75 s at 25 users, 2.21 s at 30 users
    run = wa.load_run(
        usl_run(tmp_path / "run", lam=0.8, sigma=0.03, kappa=0.0008, users=list(range(5, 45, 5)))
    )
    cap = wa.capacity(run, wa.SLO(e2e_p95_ms=2000), target_users=1000, headroom=0.2)
    assert cap.max_users == 25 and cap.first_breach_users == 30
    assert "turn:e2e p95" in cap.first_breach
    assert cap.instances == math.ceil(1000 / 20)
    text = "\n".join(cap.statement())
    e2e_25 = cap.steps.set_index("users").loc[25, "e2e_p95_ms"]
    assert (
        "Measured limit: the largest user count meeting the SLO is 25 users per instance "
        f"(p95 turn:e2e {e2e_25:.0f} ms" in text
    )
    assert "first breach was at 30 users" in text
    assert f"For 1000 users: {cap.instances} instance(s)" in text
    assert "from the measured limit of 25 users" in text
    assert "Knee" in text and cap.knee_users == pytest.approx(cap.fit.knee_users)
    assert any("scale out linearly" in a for a in cap.assumptions)
    good = cap.steps.set_index("users")
    assert good.loc[30, "goodput_tps"] < good.loc[30, "throughput_tps"]
    assert good.loc[25, "goodput_tps"] == pytest.approx(good.loc[25, "throughput_tps"])


def test_a_run_that_never_breaks_the_slo_gives_a_lower_bound(tmp_path):
    run = wa.load_run(usl_run(tmp_path / "run", lam=1, sigma=0, kappa=0, users=[2, 4]))
    cap = wa.capacity(run, wa.SLO(), target_users=10)
    assert cap.lower_bound and cap.max_users == 4
    assert cap.instances is None  # a lower bound measures no limit to project from
    assert cap.fit is None
    statement = cap.statement()
    assert any("one instance carries at least 4 users" in line for line in statement)
    assert not any(line.startswith("For 10 users") for line in statement)
    assert any(line.startswith("No instance projection for 10 users") for line in statement)


# --- the step plan of locustfiles/capacity.py -------------------------------------------


def _drive(plan: StepPlan, verdict, limit: int = 500) -> list[int]:
    """Tick the plan once a second; users start instantly; the judge says ``verdict(u)``."""
    seen: list[int] = []
    for second in range(limit):
        running = plan.current.users if plan.current else 0
        answer = plan.tick(float(second), running, lambda step: verdict(step.users))
        if answer is None:
            return seen
        if not seen or seen[-1] != answer[0]:
            seen.append(answer[0])
    raise AssertionError("the plan did not end")


def test_steps_rise_from_start_by_size_to_max_and_end():
    plan = StepPlan(StepSettings(start=5, size=5, hold_s=3, max_users=15))
    assert _drive(plan, lambda users: []) == [5, 10, 15]
    assert [(s.users, s.end - s.hold_start) for s in plan.steps] == [(5, 3), (10, 3), (15, 3)]
    assert all(s.verdict == "" for s in plan.steps)


def test_search_raises_until_a_breach_then_narrows_to_the_limit():
    settings = StepSettings(start=5, size=5, hold_s=2, max_users=50, search=True, resolution=1)
    plan = StepPlan(settings)
    seen = _drive(plan, lambda users: ["too slow"] if users > 12 else [])
    assert seen == [5, 10, 15, 12, 13]
    assert (plan.passing, plan.failing) == (12, 13)
    assert [s.verdict for s in plan.steps] == ["ok", "ok", "breach", "ok", "breach"]


def test_search_that_breaks_at_the_first_step_narrows_down_towards_zero():
    settings = StepSettings(start=8, size=8, hold_s=1, max_users=40, search=True, resolution=2)
    plan = StepPlan(settings)
    seen = _drive(plan, lambda users: ["no"] if users > 3 else [])
    assert seen[0] == 8 and plan.failing == 4 and plan.passing == 2


def test_search_without_a_breach_stops_at_max():
    plan = StepPlan(StepSettings(start=10, size=10, hold_s=1, max_users=30, search=True))
    assert _drive(plan, lambda users: []) == [10, 20, 30]
    assert plan.failing is None and plan.passing == 30


def test_a_ramp_that_never_reaches_its_users_still_holds_after_a_timeout():
    plan = StepPlan(StepSettings(start=5, size=5, hold_s=2, max_users=5))
    answers = [plan.tick(float(t), 0) for t in range(40)]  # no user ever starts
    assert answers[0] == (5, 5.0) and None in answers


def test_percentile_of_a_locust_histogram():
    assert histogram_percentile({10: 90, 100: 10}, 0.95) == 100.0
    assert histogram_percentile({10: 96, 100: 4}, 0.95) == 10.0
    assert math.isnan(histogram_percentile({}, 0.95))


def test_steps_during_which_the_generator_was_saturated_are_named(tmp_path):
    folder = usl_run(tmp_path / "run", lam=1, sigma=0, kappa=0, users=[2, 4], hold_s=20)
    samples = pd.read_csv(folder / "samples.csv")
    health = pd.DataFrame(
        {
            "v": 1,
            "node": "gen0",
            "ts": [ORIGIN + t + 0.5 for t in range(40)],
            "kind": "health",
            "name": "health:cpu",
            "ms": [97.0 if 25 <= t < 30 else 20.0 for t in range(40)],
            "ok": 1,
            "users": 4,
        }
    )
    pd.concat([samples, health]).to_csv(folder / "samples.csv", index=False)
    cap = wa.capacity(wa.load_run(folder))
    assert cap.steps["generator_saturated"].tolist() == [False, True]
    assert any("saturated" in line and "4 users" in line for line in cap.statement())
