"""The report's shortcuts over the tables give what the slower, general queries give:
the users timeline when two counts end at the same instant, the turn waterfall read from
the successful turns alone, each query reading only the long view's columns it needs."""

from __future__ import annotations

import pandas as pd
from test_report_tables import NAMES, STEPS_CSV, same
from test_results_tables import T0, seconds_of_records

from wsload.analysis import load_run, stats
from wsload.analysis.sql_stats import name_counts
from wsload.analysis.table_run import _last_counts, load_table_run
from wsload.run.batch import Batch
from wsload.run.recorder import write_run_json
from wsload.run.records import SessionEvent, Who
from wsload.run.writer import ArrowWriter


def write_tied_run(folder, *, ramp: bool = False) -> None:
    """``write_run``'s records (``ramp``: with 3 more users each second), then two session
    rows of different user counts ending at the same instant, the last of their second:
    the later start wins, as load_run orders them."""
    folder.mkdir(parents=True)
    meta = {"run_id": "r-1", "started": T0, "stopped": None}
    write_run_json(folder, meta)
    writer = ArrowWriter(folder, "r-1")
    for second, batch in enumerate(seconds_of_records()):
        if ramp:
            batch.items = [3 * second + 1 if type(i) is int else i for i in batch.items]
        writer.write(batch)
    tied = Batch("w1")
    tied.add(SessionEvent(T0 + 13.5, Who(1, "s", "x"), "session:refresh", 250.0), 4)
    tied.add(SessionEvent(T0 + 13.25, Who(2, "s", "y"), "session:refresh", 500.0), 9)
    writer.write(tied)
    writer.close()
    write_run_json(folder, {**meta, "stopped": T0 + 14.0})


def test_a_second_whose_last_end_two_user_counts_share_orders_them_as_load_run(tmp_path):
    folder = tmp_path / "run"
    write_tied_run(folder, ramp=True)
    pandas_run, table_run = load_run(folder), load_table_run(folder)
    try:
        same(pandas_run.timeline, table_run.timeline)
        counts = _last_counts(table_run.con, table_run.started, table_run.events)
        last = counts.sort_values("ts").iloc[-1]
        assert (last["ts"], last["users"]) == (T0 + 13.75, 4)
        for max_groups in (25, 3, 2):  # users binned from the counted values
            expected = stats.percentiles_by_users(pandas_run, NAMES, max_groups=max_groups)
            got = stats.percentiles_by_users(table_run, NAMES, max_groups=max_groups)
            same(expected, got)
            assert set(got["basis"]) == {"concurrency"}
            assert got["users"].nunique() <= max_groups
        assert stats.percentiles_by_users(table_run, NAMES)["users"].nunique() > 3
    finally:
        table_run.close()


def test_the_waterfall_from_the_successful_turns_equals_the_join_of_events_and_turns(tmp_path):
    folder = tmp_path / "run"
    write_tied_run(folder)
    pandas_run = load_run(folder)
    fast, joined = load_table_run(folder), load_table_run(folder)
    try:
        stats.ok_turns_e2e(joined)
        joined.answers["turns unique"] = False  # as when a turn was recorded twice
        for stat in ("mean", "median"):
            expected = stats.turn_waterfall(pandas_run, stat)
            assert len(expected) >= 2
            pd.testing.assert_frame_equal(expected, stats.turn_waterfall(fast, stat), rtol=1e-12)
            pd.testing.assert_frame_equal(expected, stats.turn_waterfall(joined, stat), rtol=1e-12)
        assert fast.answers["turns unique"] is True
    finally:
        fast.close()
        joined.close()


def test_the_per_name_table_and_the_sample_counts_come_from_one_counting_pass(tmp_path):
    folder = tmp_path / "run"
    write_tied_run(folder)
    pandas_run, table_run = load_run(folder), load_table_run(folder)
    try:
        same(stats.name_percentiles(pandas_run), stats.name_percentiles(table_run))
        some = ["turn:e2e", "session:refresh", "auth"]
        same(stats.name_percentiles(pandas_run, some), stats.name_percentiles(table_run, some))
        total, failed = table_run.one(f"SELECT sum(n), sum(n) FILTER (WHERE NOT ok) FROM "
                                      f"{name_counts(table_run)}")  # fmt: skip
        assert total == len(pandas_run.samples)
        assert failed == int((~pandas_run.samples["ok"]).sum()) > 0
    finally:
        table_run.close()


def test_windows_steps_and_users_of_a_few_names_come_from_one_counting_pass(tmp_path):
    folder = tmp_path / "run"
    write_tied_run(folder)
    (folder / "steps.csv").write_text(STEPS_CSV)
    pandas_run, table_run = load_run(folder), load_table_run(folder)
    try:
        same(
            stats.window_percentiles(pandas_run, None, NAMES),
            stats.window_percentiles(table_run, None, NAMES),
        )
        same(stats.step_percentiles(pandas_run, NAMES), stats.step_percentiles(table_run, NAMES))
        passes = [k for k in table_run.answers if isinstance(k, tuple) and k[0] == "load counts"]
        assert passes == [("load counts", tuple(sorted(NAMES)))]
    finally:
        table_run.close()


def test_a_narrow_view_of_the_measurements_has_the_full_views_rows(tmp_path):
    folder = tmp_path / "run"
    write_tied_run(folder)
    run = load_table_run(folder)
    try:
        for view in ("m0", "m", "m_users"):
            columns = ["name", "ok", "t_s", "ms"] + (["step", "in_hold"] if view != "m0" else [])
            columns += ["total_users"] if view == "m_users" else []
            picked = ", ".join(columns)
            order = f"ORDER BY {picked}"
            full = run.df(f"SELECT {picked} FROM {view} {order}")
            narrow = run.df(f"SELECT {picked} FROM {run.rows(['name', 'ok', 'ms'], view)} {order}")
            assert len(full) > 1000
            pd.testing.assert_frame_equal(full, narrow)
    finally:
        run.close()
