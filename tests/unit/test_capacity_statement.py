"""The capacity statement keeps measured numbers, bounds and extrapolations apart: no
instance projection without a measured limit, a knee past the largest step labelled as
extrapolated, and steep p95 growth between steps flagged even while the SLO holds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from wsload_runs import ORIGIN, usl_run, write_run

from wsload import analysis as wa
from wsload.reports import build_report

HOLD_S = 30  # longer than the slowest turn
TURNS_PER_STEP = 40


def stepped_run(folder: Path, latencies: dict[int, tuple[float, float]]) -> Path:
    """A run holding each user count for ``HOLD_S`` s; every turn of the step takes the
    given (ttfe ms, e2e ms), and every user opens a session (connect 2 ms, auth 1 ms)."""
    rows: list[dict] = []
    start, turn = ORIGIN, 0
    for users, (ttfe, e2e) in latencies.items():
        for i in range(users):
            common = {"node": "gen0", "user": i, "session": f"s{users}-{i}", "users": users}
            rows.append({**common, "ts": start + 0.01, "kind": "connect", "name": "connect"})
            rows[-1].update({"ms": 2.0, "ok": 1})
            rows.append({**common, "ts": start + 0.012, "kind": "auth", "name": "auth"})
            rows[-1].update({"ms": 1.0, "ok": 1})
        for k in range(TURNS_PER_STEP):
            turn += 1
            # every turn starts and ends inside its step's hold
            begin = start + 0.5 + k * (HOLD_S - 1 - e2e / 1000) / TURNS_PER_STEP
            i = k % users
            common = {"node": "gen0", "user": i, "session": f"s{users}-{i}", "users": users}
            common.update({"ts": begin, "turn": turn, "ok": 1})
            rows.append({**common, "kind": "event", "name": "turn:ttfe", "ms": ttfe})
            rows.append({**common, "kind": "turn", "name": "turn:e2e", "ms": e2e, "events": 3})
        start += HOLD_S
    rows.sort(key=lambda r: r["ts"])
    return write_run(folder, rows)


def capacity_of(tmp_path: Path, latencies: dict, **kwargs) -> wa.Capacity:
    return wa.capacity(wa.load_run(stepped_run(tmp_path / "run", latencies)), **kwargs)


def test_a_run_that_never_breaks_the_slo_gives_a_bound_and_refuses_a_projection(tmp_path):
    cap = capacity_of(tmp_path, {10: (50, 150), 20: (60, 180), 30: (70, 210)}, target_users=5000)
    assert cap.lower_bound and not cap.measured_limit
    assert cap.max_users == 30 and cap.first_breach_users is None
    assert cap.instances is None
    text = "\n".join(cap.statement())
    assert "Measured: the largest step, 30 users, met the SLO (p95 turn:e2e 210 ms, " in text
    assert "turn:ttfe 70.0 ms" in text
    assert (
        "Bound, not a limit: one instance carries at least 30 users: no step broke the SLO, "
        "so the real limit was not reached." in text
    )
    assert "For 5000 users" not in text and "instance(s)" not in text
    refusal = next(line for line in cap.statement() if line.startswith("No instance projection"))
    assert "for 5000 users: the per-instance limit was not measured" in refusal
    assert "--step-max" in refusal and "--step-search" in refusal
    assert "locustfiles/capacity.py" in refusal
    assert cap.limit_text() == "at least 30 users (no step broke the SLO)"


def test_a_broken_slo_gives_a_measured_limit_and_a_projection(tmp_path):
    latencies = {10: (50, 300), 20: (60, 450), 30: (80, 6000)}
    cap = capacity_of(tmp_path, latencies, target_users=1000, headroom=0.2)
    assert cap.measured_limit and not cap.lower_bound
    assert (cap.max_users, cap.first_breach_users) == (20, 30)
    assert cap.instances == math.ceil(1000 / math.floor(20 * 0.8))
    text = "\n".join(cap.statement())
    assert (
        "Measured limit: the largest user count meeting the SLO is 20 users per instance "
        "(p95 turn:e2e 450 ms, turn:ttfe 60.0 ms, connect 2.00 ms, auth 1.00 ms)" in text
    )
    assert "the first breach was at 30 users (turn:e2e p95 6000 ms > 5000 ms)" in text
    assert f"For 1000 users: {cap.instances} instance(s) (1000 / 16 users per instance" in text
    assert "from the measured limit of 20 users" in text
    assert "No instance projection" not in text
    assert cap.limit_text() == "20 users (measured)"


def test_no_step_meeting_the_slo_makes_no_projection(tmp_path):
    cap = capacity_of(tmp_path, {10: (50, 7000), 20: (60, 9000)}, target_users=100)
    assert cap.max_users is None and cap.first_breach_users == 10 and cap.instances is None
    text = "\n".join(cap.statement())
    assert "no step met the SLO; the smallest, 10 users, broke it" in text
    assert "No instance projection for 100 users: no step met the SLO" in text


def test_a_knee_beyond_the_largest_step_is_labelled_extrapolated(tmp_path):
    users = [5, 10, 15, 20, 25]
    folder = usl_run(tmp_path / "run", lam=1.0, sigma=0.01, kappa=0.00002, users=users, noise=0)
    cap = wa.capacity(wa.load_run(folder), wa.SLO(e2e_p95_ms=60_000))
    assert cap.largest_users == 25
    assert cap.knee_users is not None and cap.knee_users > 25 and cap.knee_extrapolated
    lines = cap.statement()
    knee = next(line for line in lines if line.startswith("Knee"))
    assert knee.startswith(
        f"Knee ≈ {cap.knee_users:.0f} users, extrapolated beyond the largest step (25 users)"
    )
    assert "not measured" in knee
    peak = next(line for line in lines if line.startswith("Throughput peak"))
    assert cap.fit.peak_users > 25
    assert "extrapolated beyond the largest step (25 users)" in peak
    assert not any("within the tested range" in line for line in lines)


def test_a_knee_within_the_tested_steps_is_not_labelled_extrapolated(tmp_path):
    users = list(range(5, 45, 5))
    folder = usl_run(tmp_path / "run", lam=0.8, sigma=0.03, kappa=0.0008, users=users)
    cap = wa.capacity(wa.load_run(folder), wa.SLO(e2e_p95_ms=60_000))
    assert cap.knee_users < 40 and cap.fit.peak_users < 40 and not cap.knee_extrapolated
    text = "\n".join(cap.statement())
    assert f"Knee ≈ {cap.knee_users:.0f} users (fitted, within the tested range)" in text
    assert "extrapolated" not in text


def test_fourfold_latency_growth_within_the_slo_is_a_warning(tmp_path):
    cap = capacity_of(tmp_path, {20: (50, 210), 40: (200, 860)})
    assert cap.lower_bound  # 860 ms is far within the 5 s SLO
    expected = (
        "turn:e2e p95 grew 4.1x from 20 to 40 users (210 ms -> 860 ms) while within the "
        "SLO: the service is near saturation."
    )
    assert expected in cap.warnings()
    assert f"Warning: {expected}" in cap.statement()
    assert any(w.startswith("turn:ttfe p95 grew 4.0x from 20 to 40 users") for w in cap.warnings())
    assert not any(w.startswith(("connect", "auth")) for w in cap.warnings())  # flat
    assert expected not in cap.statement(with_warnings=False)


def test_growth_of_one_third_is_no_warning(tmp_path):
    cap = capacity_of(tmp_path, {20: (50, 210), 40: (65, 273)})
    assert cap.growth == [] and cap.warnings() == []
    assert not any(line.startswith("Warning") for line in cap.statement())


def test_the_growth_factor_is_the_threshold(tmp_path):
    factor = wa.GROWTH_FACTOR
    at = capacity_of(tmp_path / "at", {10: (50, 400), 20: (50, 400 * factor)})
    below = capacity_of(tmp_path / "below", {10: (50, 400), 20: (50, 400 * factor * 0.95)})
    assert [(g.stage, g.users_from, g.users_to) for g in at.growth] == [("turn:e2e", 10, 20)]
    assert at.growth[0].factor == pytest.approx(factor)
    assert below.growth == []


def test_growth_into_a_breach_says_the_slo_broke(tmp_path):
    cap = capacity_of(tmp_path, {10: (50, 1000), 20: (50, 6000)})
    [growth] = cap.growth
    assert (growth.met_from, growth.met_to) == (True, False)
    assert growth.sentence() == (
        "turn:e2e p95 grew 6.0x from 10 to 20 users (1000 ms -> 6000 ms), where the SLO broke "
        "at 20 users."
    )


def test_growth_compares_neighbouring_user_counts_in_any_step_order():
    table = pd.DataFrame(
        {
            "users": [10, 30, 20, 20],  # a search revisits a count: its worst step counts
            "e2e_p95_ms": [100.0, 450.0, 150.0, 240.0],
            "ttfe_p95_ms": [np.nan, 40.0, 30.0, 30.0],
            "meets_slo": [True, True, True, True],
        }
    )
    found = wa.latency_growth(table)
    assert [(g.stage, g.users_from, g.users_to) for g in found] == [("turn:e2e", 10, 20)]
    assert found[0].p95_from_ms == 100.0 and found[0].p95_to_ms == 240.0


def test_a_report_shows_the_growth_warning_and_the_refusal(tmp_path):
    folder = stepped_run(tmp_path / "run", {20: (50, 210), 40: (200, 860)})
    files = build_report(folder, output=tmp_path / "r", target_users=5000)
    markdown, page = files.markdown.read_text(), files.html.read_text()
    warning = "turn:e2e p95 grew 4.1x from 20 to 40 users (210 ms -&gt; 860 ms) while within"
    assert f"> **Warning:** {warning.replace('&gt;', '>')}" in markdown
    assert f'<p class="warn"><strong>Warning:</strong> {warning}' in page
    assert "No instance projection for 5000 users" in markdown
    assert "For 5000 users" not in markdown and "For 5000 users" not in page
    assert "Assumptions behind the projection" not in markdown
    assert "capacity: **Bound, not a limit: one instance carries at least 40 users" not in (
        markdown
    )
    assert "- capacity: Bound, not a limit: one instance carries at least 40 users" in markdown


def test_a_report_with_a_measured_limit_projects_with_its_assumptions(tmp_path):
    folder = stepped_run(tmp_path / "run", {10: (50, 300), 20: (60, 450), 30: (80, 6000)})
    files = build_report(folder, output=tmp_path / "r", target_users=1000)
    markdown = files.markdown.read_text()
    assert files.capacity.instances == 50
    assert "For 1000 users: 50 instance(s)" in markdown
    assert "Assumptions behind the projection" in markdown
    assert "**Measured limit: the largest user count meeting the SLO is 20 users" in markdown
