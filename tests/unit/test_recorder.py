"""Raw rows written by the recorder read back exactly, whatever text they carry."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.run.recorder import COLUMNS, ROW_FIELDS, Recorder, expand, turn_label
from wsload.run.summary import load_samples

free_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


def row(subject: str, detail: str, ms: float = 12.5, ok: int = 1) -> tuple:
    values = {
        "node": "w0", "ts": 1795459291.123456, "user": 3, "subject": subject,
        "session": "w0-3-1", "turn": 7, "kind": "turn", "name": "turn:e2e", "ms": ms,
        "ok": ok, "failure": "" if ok else "agent_error", "http_status": "", "close_code": 1008,
        "users": 20, "bytes": 64, "events": 6, "detail": detail, "inflight": 4,
    }  # fmt: skip
    return tuple(values[name] for name in ROW_FIELDS)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(free_text, free_text), min_size=1, max_size=8))
def test_subjects_and_details_with_commas_quotes_and_newlines_read_back(tmp_path_factory, texts):
    folder = tmp_path_factory.mktemp("run")
    recorder = Recorder(folder, "run-1")
    recorder.add_many(
        [row(f"s{i}{subject}", detail, ok=i % 2) for i, (subject, detail) in enumerate(texts)]
    )
    recorder.close()
    samples = load_samples(folder)
    assert list(samples.columns) == list(COLUMNS) and len(samples) == len(texts)
    for i, (subject, detail) in enumerate(texts):
        got = samples.iloc[i]
        assert got["subject"] == f"s{i}{subject}"
        assert (got["detail"] if isinstance(got["detail"], str) else "") == detail
        assert bool(got["ok"]) == bool(i % 2) and got["run_id"] == "run-1" and got["v"] == 1


def test_numbers_keep_their_value(tmp_path):
    recorder = Recorder(tmp_path, "r")
    recorder.add(row("a", "", ms=0.001))
    recorder.add(row("b", "x", ms=123456.789))
    recorder.close()
    samples = load_samples(tmp_path)
    assert list(samples["ms"]) == [0.001, 123456.789]
    assert samples["ts"].iloc[0] == 1795459291.123456 and samples["inflight"].iloc[1] == 4


def turn_block(subject: str, detail: str, labels: list[str], values: list[float], ok: int = 1):
    end = (12.5, ok, "" if ok else "agent_error", 64, len(values), detail, 3)
    return ("w0", 1795459291.5, 3, subject, "w0-3-1", 7, 20, tuple(labels), values, end)


label_names = st.sampled_from(
    ["turn:ttfe", "turn:gap", "turn:tool", "turn:odd,name", 'turn:"q"', "turn:100%"]
)


@settings(max_examples=60, deadline=None)
@given(
    free_text,
    free_text,
    st.lists(
        st.tuples(
            st.sampled_from(["event", "gap", "span"]),
            label_names,
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
        ),
        max_size=14,
    ),
    st.integers(0, 1),
)
def test_a_turn_block_is_written_as_the_rows_it_expands_to(
    tmp_path_factory, subject, detail, samples, ok
):
    folder = tmp_path_factory.mktemp("run")
    block = turn_block(
        f"s{subject}",
        detail,
        [turn_label(k, n) for k, n, _ in samples],
        [v for *_, v in samples],
        ok,
    )
    recorder = Recorder(folder, "run-1")
    recorder.add_many([row("before", ""), block, row("after", "")])
    recorder.close()
    got = load_samples(folder)
    want = [row("before", ""), *expand([block]), row("after", "")]
    assert len(got) == len(want)
    for i, expected in enumerate(want):
        read = got.iloc[i]
        for field, value in zip(ROW_FIELDS, expected, strict=True):
            if field == "ok":
                assert bool(read[field]) == bool(value)
            elif isinstance(value, int | float):
                assert float(read[field]) == pytest.approx(value, abs=1e-3), field
            elif value in ("", None):
                assert pd.isna(read[field]) or read[field] == ""
            else:
                assert str(read[field]) == str(value), field


def test_expand_names_each_sample_of_a_turn_and_its_end():
    block = turn_block("s", "late", ["event,turn:ttfe", "gap,turn:gap"], [1.0, 2.5], ok=0)
    rows = expand([block])
    assert [(r[6], r[7], r[8], r[9]) for r in rows] == [
        ("event", "turn:ttfe", 1.0, 1),
        ("gap", "turn:gap", 2.5, 1),
        ("turn", "turn:e2e", 12.5, 0),
    ]
    assert rows[-1][16] == "late" and rows[-1][17] == 3


def test_expand_failed_only_keeps_just_failed_rows_and_turn_ends():
    good = turn_block("s", "", ["event,turn:ttfe"], [1.0], ok=1)
    bad = turn_block("s", "x", ["event,turn:ttfe"], [1.0], ok=0)
    rows = expand([row("a", ""), row("b", "", ok=0), good, bad], failed_only=True)
    assert [(r[3], r[7]) for r in rows] == [("b", "turn:e2e"), ("s", "turn:e2e")]


def test_loading_some_columns_reads_just_those_with_the_same_values(tmp_path):
    recorder = Recorder(tmp_path, "r")
    recorder.add_many([row("a,b", 'say "x"', ok=0), row("c", "", ms=3.25)])
    recorder.close()
    whole = load_samples(tmp_path)
    some = load_samples(tmp_path, ("name", "ok", "ms", "detail"))
    assert list(some.columns) == ["name", "ms", "ok", "detail"]  # file order
    pd.testing.assert_frame_equal(some, whole[list(some.columns)])
