"""Raw rows written by the recorder read back exactly, whatever text they carry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.recorder import COLUMNS, ROW_FIELDS, Recorder
from wsload.summary import load_samples

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
