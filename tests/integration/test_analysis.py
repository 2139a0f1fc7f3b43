"""``wsload.analysis``: tidy tables from real and synthetic run folders, percentiles,
failures, health warnings, multi-node folders, comparisons and bad input."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from wsload_runs import ORIGIN, real_run, samples_csv, usl_run, write_run

from wsload import analysis as wa
from wsload.errors import ConfigError
from wsload.run.recorder import COLUMNS


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return real_run(tmp_path_factory.getbasetemp(), "chat")


@pytest.fixture(scope="module")
def chat(chat_dir):
    return wa.load_run(chat_dir)


@pytest.fixture(scope="module")
def raw(chat_dir):
    return pd.read_csv(samples_csv(chat_dir), dtype={"session": "string"})


def test_public_names_are_all_importable_and_not_submodules():
    import types

    for name in wa.__all__:
        assert not isinstance(getattr(wa, name), types.ModuleType), name


@pytest.mark.slow
def test_samples_are_unit_consistent_with_datetimes(chat):
    samples = chat.samples
    assert "ms" not in samples.columns and "latency_ms" in samples.columns
    assert str(samples["time"].dtype).startswith("datetime64") and samples["time"].dt.tz
    assert (samples["time"] - pd.to_datetime(samples["ts"], unit="s", utc=True)).abs().max() < (
        pd.Timedelta(milliseconds=1)
    )
    assert samples["t_s"].min() >= -1.0
    assert (samples["kind"] != "health").all()
    for frame in (chat.turns, chat.sessions):
        assert not [c for c in frame.columns if c == "ms" or c.endswith("_s_ms")]


@pytest.mark.slow
def test_turns_table_has_one_row_per_turn_matching_the_raw_rows(chat, raw):
    e2e_rows = raw.loc[raw["name"] == "turn:e2e"]
    assert len(chat.turns) == len(e2e_rows) > 10
    assert not chat.turns.duplicated(["node", "session", "turn"]).any()
    for turn in chat.turns.sample(n=min(8, len(chat.turns)), random_state=1).itertuples():
        rows = raw.loc[(raw["node"] == turn.node) & (raw["turn"] == turn.turn)]
        by_name = rows.groupby("name")["ms"]
        assert turn.e2e_ms == pytest.approx(by_name.first()["turn:e2e"])
        assert turn.ttfe_ms == pytest.approx(by_name.first()["turn:ttfe"])
        assert turn.agent_completed_ms == pytest.approx(by_name.first()["turn:agent_completed"])
        assert turn.gap_max_ms == pytest.approx(rows.loc[rows["name"] == "turn:gap", "ms"].max())
        assert turn.gaps == (rows["name"] == "turn:gap").sum()
        assert turn.tool_span_ms == pytest.approx(rows.loc[rows["name"] == "turn:tool", "ms"].sum())
        assert turn.events == 6 and turn.ok
    assert chat.stages == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]


@pytest.mark.slow
def test_sessions_table_has_connect_and_auth_of_each_session(chat, raw):
    connects = raw.loc[(raw["name"] == "connect") & raw["session"].notna()]
    assert len(chat.sessions) == connects.drop_duplicates(["node", "session"]).shape[0]
    row = chat.sessions.iloc[0]
    first = connects.loc[connects["session"] == row.session].iloc[0]
    assert row.connect_ms == pytest.approx(first["ms"])
    assert row.ok and row.turns >= 1 and row.end >= row.start


@pytest.mark.slow
def test_percentiles_per_window_and_per_step_cover_every_turn(chat):
    windows = wa.window_percentiles(chat, window_s=1.0, names=["turn:e2e"])
    assert windows["count"].sum() == len(chat.turns)
    assert (windows["users"] > 0).all()
    steps = wa.step_percentiles(chat, names=["turn:e2e"])
    assert len(chat.steps) == 1 and chat.steps["users"].iloc[0] >= 6
    assert steps["count"].sum() >= 0.9 * len(chat.turns)
    table = wa.percentile_table(chat.samples, names=["turn:e2e"])
    good = chat.turns.loc[chat.turns["ok"], "e2e_ms"]
    assert table["p95_ms"].iloc[0] == pytest.approx(good.quantile(0.95))


def _chat_rows(n_turns: int = 10, fail_every: int = 0, node: str = "a") -> list[dict]:
    rows = []
    for k in range(n_turns):
        ts = ORIGIN + k
        session = f"{node}-1-1"
        ok = not (fail_every and k % fail_every == 0)
        common = {"node": node, "ts": ts, "user": 1, "session": session, "turn": k + 1}
        common["users"] = 1
        rows.append({**common, "kind": "event", "name": "turn:ttfe", "ms": 50.0, "ok": 1})
        rows.append({**common, "kind": "event", "name": "turn:agent_started", "ms": 50.0})
        rows[-1]["ok"] = 1
        rows.append({**common, "kind": "gap", "name": "turn:gap", "ms": 10.0, "ok": 1})
        rows.append({**common, "kind": "gap", "name": "turn:gap", "ms": 30.0, "ok": 1})
        rows.append(
            {
                **common,
                "kind": "turn",
                "name": "turn:e2e",
                "ms": 100.0 + k,
                "ok": int(ok),
                "failure": "" if ok else "event_timeout",
                "events": 3,
            }
        )
    first = {"node": node, "ts": ORIGIN - 0.01, "user": 1, "session": f"{node}-1-1", "users": 1}
    rows.append({**first, "kind": "connect", "name": "connect", "ms": 3.0, "ok": 1})
    rows.append({**first, "kind": "auth", "name": "auth", "ms": 1.0, "ok": 1})
    return rows


def test_failures_are_counted_by_taxonomy_id_and_window(tmp_path):
    run = wa.load_run(write_run(tmp_path / "run", _chat_rows(10, fail_every=3)))
    summary = wa.failure_summary(run)
    assert summary.to_dict("records")[0] | {"first_s": 0, "last_s": 0} == {
        "failure": "event_timeout",
        "count": 4,
        "share": 1.0,
        "names": "turn:e2e",
        "first_s": 0,
        "last_s": 0,
    }
    over_time = wa.failures_over_time(run, window_s=5)
    assert over_time["count"].sum() == 4
    assert set(over_time["failure"]) == {"event_timeout"}
    turns = run.turns
    assert turns["ok"].sum() == 6 and (turns.loc[~turns["ok"], "failure"] == "event_timeout").all()
    assert turns["gap_max_ms"].eq(30.0).all() and turns["gap_mean_ms"].eq(20.0).all()


def test_health_rows_become_a_health_table_and_saturated_windows_are_flagged(tmp_path):
    rows = _chat_rows(10)
    for second in range(10):
        cpu = 97.0 if 4 <= second < 6 else 40.0
        lag = 80.0 if second == 8 else 2.0
        for name, value in (("health:cpu", cpu), ("health:lag", lag), ("health:users", 1)):
            rows.append({"node": "a", "ts": ORIGIN + second + 0.5, "kind": "health"})
            rows[-1].update({"name": name, "ms": value, "ok": 1, "users": 1})
    run = wa.load_run(write_run(tmp_path / "run", rows))
    assert set(run.health["metric"]) == {"cpu", "lag", "users"}
    assert (run.samples["kind"] != "health").all()
    warnings = wa.health_warnings(run, window_s=2.0)
    assert warnings[["metric", "t_s", "peak"]].to_dict("records") == [
        {"metric": "cpu", "t_s": 4.0, "peak": 97.0},
        {"metric": "lag", "t_s": 8.0, "peak": 80.0},
    ]


def test_a_run_without_health_rows_has_an_empty_health_table(tmp_path):
    run = wa.load_run(write_run(tmp_path / "run", _chat_rows(5)))
    assert run.health.empty and wa.health_warnings(run).empty


def test_multi_node_folders_sum_users_across_nodes_and_keep_turns_apart(tmp_path):
    single = wa.load_run(usl_run(tmp_path / "one", lam=1, sigma=0, kappa=0, users=[4, 8]))
    double = wa.load_run(usl_run(tmp_path / "two", lam=1, sigma=0, kappa=0, users=[4, 8], nodes=2))
    assert double.nodes == ["gen0", "gen1"]
    assert double.steps["users"].tolist() == single.steps["users"].tolist() == [4, 8]
    assert len(double.turns) == len(single.turns)
    assert double.turns.groupby("node").size().min() > 0
    assert len(double.sessions) == 12


def test_a_real_run_renamed_to_two_nodes_doubles_turns_and_users(chat_dir, tmp_path):
    raw = pd.read_csv(samples_csv(chat_dir), dtype=str, keep_default_na=False)
    raw = raw.loc[raw["kind"] != "health"]
    other = raw.copy()
    other["node"] = "w2"
    both = tmp_path / "both"
    both.mkdir()
    pd.concat([raw, other]).to_csv(both / "samples.csv", index=False)
    shutil.copy(chat_dir / "run.json", both / "run.json")
    one, two = wa.load_run(chat_dir), wa.load_run(both)
    assert len(two.turns) == 2 * len(one.turns)
    assert len(two.sessions) == 2 * len(one.sessions)
    assert two.max_users == 2 * int(raw["users"].astype(int).max())


def test_steps_are_derived_from_user_counts_when_the_run_marked_none(tmp_path):
    run = wa.load_run(usl_run(tmp_path / "run", lam=1, sigma=0, kappa=0, users=[3, 6, 9]))
    steps = run.steps
    assert steps["users"].tolist() == [3, 6, 9]
    assert steps["source"].eq("derived").all()
    assert steps["hold_s"].tolist() == [60.0, 60.0, 60.0]
    assert run.samples["step"].notna().all()


def test_steps_file_of_a_capacity_run_wins_over_derived_steps(tmp_path):
    marks = pd.DataFrame(
        {
            "step": [1, 2],
            "users": [3, 6],
            "start": [ORIGIN, ORIGIN + 60],
            "hold_start": [ORIGIN + 1, ORIGIN + 61],
            "end": [ORIGIN + 60, ORIGIN + 120],
            "verdict": ["ok", "breach"],
            "breaches": ["", "turn:e2e p95 900 ms > 500 ms"],
        }
    )
    folder = usl_run(tmp_path / "run", lam=1, sigma=0, kappa=0, users=[3, 6])
    marks.to_csv(folder / wa.STEPS_FILE, index=False)
    steps = wa.load_run(folder).steps
    assert steps["source"].eq("steps.csv").all()
    assert steps["hold_s"].tolist() == [59.0, 59.0]
    assert steps["verdict"].tolist() == ["ok", "breach"]


def test_comparing_a_run_with_a_slower_copy_flags_only_what_got_slower(chat_dir, tmp_path):
    raw = pd.read_csv(samples_csv(chat_dir), dtype=str, keep_default_na=False)
    slow = raw.copy()
    e2e = slow["name"] == "turn:e2e"
    slow.loc[e2e, "ms"] = (slow.loc[e2e, "ms"].astype(float) * 2).map("{:.3f}".format)
    folder = tmp_path / "slow"
    folder.mkdir()
    slow.to_csv(folder / "samples.csv", index=False)
    shutil.copy(chat_dir / "run.json", folder / "run.json")
    table = wa.compare_runs(wa.load_run(chat_dir), wa.load_run(folder)).set_index("name")
    assert table.loc["turn:e2e", "regression"]
    assert "p95_ms" in table.loc["turn:e2e", "regressed"]
    assert table.loc["turn:e2e", "p50_ms_delta_pct"] == pytest.approx(100, abs=1)
    assert not table.drop(index="turn:e2e")["regression"].any()
    same = wa.compare_runs(wa.load_run(chat_dir), wa.load_run(chat_dir))
    assert set(same["status"]) == {"same"}


def test_names_only_in_one_run_are_marked_new_or_missing(tmp_path):
    base = wa.load_run(write_run(tmp_path / "a", _chat_rows(5)))
    rows = [r for r in _chat_rows(5) if r["name"] != "auth"]
    rows.append({"node": "a", "ts": ORIGIN, "kind": "probe", "name": "probe:no_token"})
    rows[-1].update({"ms": 1.0, "ok": 1, "users": 1})
    new = wa.load_run(write_run(tmp_path / "b", rows))
    status = wa.compare_runs(base, new).set_index("name")["status"]
    assert status["auth"] == "missing" and status["probe:no_token"] == "new"


def _folder_with(content: bytes | None):
    def make(path):
        if content is not None:
            (path / "samples.csv").write_bytes(content)
        return path

    return make


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "absent", "is not a folder"),
        (_folder_with(None), "not a wsload run folder"),
        (_folder_with(b""), "is empty"),
        (_folder_with((",".join(COLUMNS) + "\n").encode()), "holds no samples"),
        (_folder_with(b"a,b\n1,2\n"), "lacks the columns"),
        (_folder_with(b"\xff\xfe\x00garbage\n\x00\x01"), "samples"),
    ],
)
def test_bad_folders_raise_one_clear_config_error(tmp_path, make, message):
    with pytest.raises(ConfigError, match=message):
        wa.load_run(make(tmp_path))
