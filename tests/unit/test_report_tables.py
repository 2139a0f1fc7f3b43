"""The report out of core: its numbers from DuckDB over the tables equal the pandas numbers
over ``load_run``'s frames, and a run too big for a memory cap still gets its report."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_results_tables import T0, write_run

from wsload.analysis import capacity, load_run, stats
from wsload.analysis.table_run import TableRun, load_table_run, open_run
from wsload.reports.builder import overview_counts, write_report
from wsload.run.recorder import write_run_json
from wsload.run.writer import ArrowWriter

REPO = Path(__file__).resolve().parents[2]
NAMES = ["connect", "auth", "turn:ttfe", "turn:e2e"]
STEPS_CSV = (
    "step,users,start,hold_start,end,verdict,breaches\n"
    f"1,3,{T0},{T0 + 1},{T0 + 4.5},ok,\n"
    f"2,5,{T0 + 4.5},{T0 + 5},{T0 + 8.2},ok,\n"
    f"3,7,{T0 + 8.2},{T0 + 9},{T0 + 13},breach,e2e\n"
)


def same(in_memory: pd.DataFrame, from_tables: pd.DataFrame) -> None:
    """Equal to the last bit, but means (a sum in another order: not shown in the report)."""
    a, b = in_memory.reset_index(drop=True), from_tables.reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    means = [c for c in a.columns if c == "mean_ms"]
    exact = [c for c in a.columns if c not in means]
    pd.testing.assert_frame_equal(a[exact], b[exact], check_dtype=False, check_exact=True)
    pd.testing.assert_frame_equal(a[means], b[means], check_dtype=False, rtol=1e-12)


@pytest.mark.parametrize("stepped", [False, True], ids=["derived-step", "steps-csv"])
def test_the_reports_numbers_from_the_tables_equal_the_pandas_numbers(tmp_path, stepped):
    folder = tmp_path / "run"
    write_run(folder)
    if stepped:
        (folder / "steps.csv").write_text(STEPS_CSV)
    pandas_run, table_run = load_run(folder), load_table_run(folder)
    try:
        for attribute in ("started", "nodes", "last_sample_end", "stages", "duration_s"):
            assert getattr(table_run, attribute) == getattr(pandas_run, attribute), attribute
        for attribute in ("timeline", "steps", "health"):
            same(getattr(pandas_run, attribute), getattr(table_run, attribute))
        assert overview_counts(table_run) == overview_counts(pandas_run)
        assert overview_counts(table_run)["sessions"] > 0
        same(stats.name_percentiles(pandas_run), stats.name_percentiles(table_run))
        for window in (1.0, 2.0, 5.0):
            same(
                stats.window_percentiles(pandas_run, window, NAMES),
                stats.window_percentiles(table_run, window, NAMES),
            )
            same(
                stats.failures_over_time(pandas_run, window),
                stats.failures_over_time(table_run, window),
            )
        same(stats.step_percentiles(pandas_run), stats.step_percentiles(table_run))
        same(
            stats.percentiles_by_users(pandas_run, NAMES),
            stats.percentiles_by_users(table_run, NAMES),
        )
        same(stats.failure_summary(pandas_run), stats.failure_summary(table_run))
        same(stats.auth_failures_by_users(pandas_run), stats.auth_failures_by_users(table_run))
        waterfall = stats.turn_waterfall(table_run)
        assert len(waterfall) == 2
        pd.testing.assert_frame_equal(stats.turn_waterfall(pandas_run), waterfall, rtol=1e-12)
        assert stats.ok_turns_e2e(table_run)[0] == stats.ok_turns_e2e(pandas_run)[0]
        expected = capacity(pandas_run, target_users=100)
        got = capacity(table_run, target_users=100)
        same(expected.steps, got.steps)
        assert got.statement() == expected.statement()
        assert len(got.steps) == (3 if stepped else 1)
    finally:
        table_run.close()


def test_the_report_from_the_tables_reads_as_the_report_from_pandas(tmp_path):
    folder = tmp_path / "run"
    write_run(folder)
    (folder / "steps.csv").write_text(STEPS_CSV)
    baseline = tmp_path / "base"
    write_run(baseline)
    opened, base = open_run(folder), open_run(baseline)
    assert isinstance(opened, TableRun)
    try:
        args = (1000, None, None, 2.0, 0.2)
        out = write_report(opened, base, tmp_path / "tables", *args)
    finally:
        opened.close()
        base.close()
    expected = write_report(load_run(folder), load_run(baseline), tmp_path / "pandas", *args)
    assert out.markdown.read_text() == expected.markdown.read_text()
    assert [p.name for p in out.figures] == [p.name for p in expected.figures]
    for mine, theirs in zip(out.figures, expected.figures, strict=True):
        assert mine.read_bytes() == theirs.read_bytes(), mine.name


def _big_batch():
    spec = importlib.util.spec_from_file_location("bench_results", REPO / "benchmarks/results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.big_batch


@pytest.mark.slow
def test_a_run_too_big_for_a_memory_cap_in_pandas_gets_its_report_under_it(tmp_path):
    """60,000 turns (780,000 measurements) take about 1 GB as ``load_run``'s frames; the
    report stays under a 600 MiB data cap (imports included) that ``load_run`` breaks."""
    folder = tmp_path / "big"
    folder.mkdir()
    turns, per_second = 60_000, 2_000
    write_run_json(folder, {"run_id": "big", "started": T0, "stopped": None})
    writer = ArrowWriter(folder, "big")
    batch = _big_batch()
    rng = np.random.default_rng(3)
    for start in range(0, turns, 20_000):
        writer.write_batches({"turns": batch(rng, start, 20_000, per_second)})
    writer.close()
    write_run_json(folder, {"run_id": "big", "started": T0, "stopped": T0 + turns / per_second})
    capped = textwrap.dedent(
        """
        import resource, sys
        cap = 600 * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
        if sys.argv[1] == "report":
            from wsload.reports import build_report
            files = build_report(sys.argv[2], output=sys.argv[3], memory_limit="200MB")
            print(len(files.figures), "figures")
        else:
            from wsload.analysis import load_run
            load_run(sys.argv[2])
        """
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    report = subprocess.run(
        [sys.executable, "-c", capped, "report", str(folder), str(tmp_path / "report")],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    assert "6 figures" in report.stdout
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"{turns} turns" in markdown
    assert f"{turns * 13} samples" in markdown
    in_memory = subprocess.run(
        [sys.executable, "-c", capped, "load", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
    )
    assert in_memory.returncode != 0
    assert "MemoryError" in in_memory.stderr or "Out of Memory" in in_memory.stderr


def test_a_report_over_its_memory_limit_ends_in_one_message_naming_the_fix(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    write_run_json(folder, {"run_id": "run", "started": T0, "stopped": None})
    writer = ArrowWriter(folder, "run")
    writer.write_batches({"turns": _big_batch()(np.random.default_rng(4), 0, 20_000, 2_000)})
    writer.close()
    done = subprocess.run(
        [sys.executable, "-m", "wsload", "report", str(folder), "--memory-limit", "1MB"],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "needs more memory than --memory-limit 1MB" in done.stderr
    assert "fix: pass a larger --memory-limit" in done.stderr
