"""Failure examples in the end-of-run summary, from samples as the loader gives them."""

from __future__ import annotations

import pandas as pd

from wsload.run.summary import example_lines


def test_examples_skip_missing_fields_of_any_kind():
    samples = pd.DataFrame(
        {
            "name": ["conformance:bad_websocket_key", "turn:e2e", "turn:e2e"],
            "ok": [False, False, True],
            "failure": pd.array(["handshake_not_conformant", "agent_error", pd.NA], "string"),
            "user": [3, 5, 5],
            "subject": pd.array(["wsload-3", "wsload-5", "wsload-5"], dtype="string"),
            "session": pd.array([pd.NA, "n-5-1", "n-5-1"], dtype="string"),  # probes have none
            "detail": pd.array(["accepted: HTTP 101", pd.NA, pd.NA], dtype="string"),
        }
    )
    lines = example_lines(samples)
    assert lines[0].startswith("failure examples")
    assert "    conformance:bad_websocket_key user 3 subject wsload-3: accepted: HTTP 101" in lines
    assert "    turn:e2e user 5 subject wsload-5 session n-5-1" in lines
    assert not any("<NA>" in line or "nan" in line for line in lines)
