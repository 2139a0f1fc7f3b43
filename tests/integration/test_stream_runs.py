"""Streamed answers measured for real: Locust as a process against the reference target
streaming a known answer (N token events at a known interval), then the gate, the summary
and the report over the same run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wsload.analysis import load_run
from wsload.reports import build_report
from wsload.run.summary import load_samples

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "locustfiles" / "ws_auth.py"
TOKENS, INTERVAL_MS, TTFE_MS, GAP_MS = 8, 20.0, 50.0, 10.0
# agent_started at TTFE, one agent_thinking a gap later, the first token a gap after that
TTFT_MS = TTFE_MS + 2 * GAP_MS
LAST_TOKEN_MS = TTFT_MS + (TOKENS - 1) * INTERVAL_MS
TARGET_ARGS = (
    f"--ttfe {TTFE_MS / 1000} --gap {GAP_MS / 1000} --thinking-steps 1 --tools 0 "
    f"--stream-tokens {TOKENS} --token-interval {INTERVAL_MS / 1000}"
)


def locust(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def streamed_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("stream")
    run = locust(
        *("-u", "3", "-r", "3", "-t", "8s", "--think-time", "0.2", "--probe-users", "0"),
        *("--target-args", TARGET_ARGS),
        *("--threshold", "turn:itl p99 < 50ms", "--threshold", "turn:ttft p50 < 100ms"),
        *("--threshold", "turn:tokens_per_s p50 > 20/s"),
        *("--threshold", f"turn:output_tokens p50 == {TOKENS}", "--threshold", "goodput >= 90%"),
        *("--goodput-limit", "turn:ttft=200ms", "--goodput-limit", "turn:tpot=40ms"),
        *("--csv", str(base / "locust"), "--results", str(base / "results")),
        *("--json-file", str(base / "locust")),
    )
    return base, run


@pytest.mark.slow
def test_ttft_itl_tpot_and_tokens_match_the_targets_known_stream(streamed_run):
    base, run = streamed_run
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    samples = load_samples(base / "results")
    ms = {name: samples.loc[samples["name"] == name, "ms"] for name in set(samples["name"])}
    assert len(ms["turn:ttft"]) >= 20
    assert abs(ms["turn:ttft"].median() - TTFT_MS) <= 2, ms["turn:ttft"].describe()
    assert abs(ms["turn:itl"].median() - INTERVAL_MS) <= 2, ms["turn:itl"].describe()
    assert abs(ms["turn:tpot"].median() - INTERVAL_MS) <= 2, ms["turn:tpot"].describe()
    assert abs(ms["turn:e2e"].median() - (LAST_TOKEN_MS + GAP_MS)) <= 2
    assert (ms["turn:output_tokens"] == TOKENS).all()
    rate = TOKENS * 1000 / LAST_TOKEN_MS
    assert abs(ms["turn:tokens_per_s"].median() - rate) <= 1, ms["turn:tokens_per_s"].describe()
    # every gap is an observation: (TOKENS - 1) per streamed turn
    assert len(ms["turn:itl"]) == (TOKENS - 1) * len(ms["turn:ttft"])
    assert samples["ok"].all()
    # the same names in Locust's own statistics, with the same counts (its --json-file is
    # written after the users stop; its _stats.csv is rewritten once a second and can trail)
    entries = json.loads((base / "locust.json").read_text())
    locust_rows = {entry["name"]: entry["num_requests"] for entry in entries}
    for name in ("turn:ttft", "turn:itl", "turn:tpot", "turn:output_tokens", "turn:tokens_per_s"):
        assert locust_rows[name] == len(ms[name]), name


@pytest.mark.slow
def test_the_gate_summary_and_report_read_the_stream_metrics(streamed_run, tmp_path):
    base, run = streamed_run
    assert run.returncode == 0, run.stderr[-3000:]
    gate_md = (base / "results" / "gate.md").read_text()
    assert "turn:itl p99 < 50ms" in gate_md and "goodput >= 90%" in gate_md
    assert "streamed answers:" in run.stdout and "turn:output_tokens [tokens]" in run.stdout
    strict = subprocess.run(
        [sys.executable, "-m", "wsload", "gate", str(base / "results")]
        + ["--threshold", "turn:itl p99 < 5ms", "--no-security-gate"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "turn:itl p99 < 5ms" in strict.stdout
    # goodput on TTFT + TPOT as AIPerf defines it: a TPOT limit below the stream's pace
    # makes every streamed turn bad
    slow = subprocess.run(
        [sys.executable, "-m", "wsload", "gate", str(base / "results"), "--no-security-gate"]
        + ["--threshold", "goodput >= 90%", "--goodput-limit", "turn:tpot=15ms"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert slow.returncode == 1, slow.stdout + slow.stderr
    turns = load_run(base / "results").turns  # the notebooks' per-turn table
    assert (turns["output_tokens"] == TOKENS).all()
    assert abs(turns["ttft_ms"].median() - TTFT_MS) <= 2
    assert abs(turns["itl_mean_ms"].median() - INTERVAL_MS) <= 2
    files = build_report(base / "results", output=tmp_path / "report")
    page = files.html.read_text()
    assert "Streamed answers" in page and "TPOT, per stream" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threshold", "turn:itll p99 < 50ms"], "did you mean 'turn:itl'"),
        (["--threshold", "turn:tokens_per_s p50 > 20ms"], "'ms' does not fit"),
        (["--goodput-limit", "turn:tokens_per_s=1s"], "is not a time"),
    ],
    ids=["misspelt-name", "wrong-unit", "goodput-on-a-rate"],
)
def test_bad_stream_gates_stop_before_any_load(tmp_path, args, message):
    run = locust(*args, "-u", "1", "-t", "5s", "--results", str(tmp_path / "r"), timeout=30)
    assert run.returncode == 2, run.stderr[-2000:]
    assert message in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "r" / "samples.csv").exists()


@pytest.mark.slow
def test_workers_ship_streamed_turns_to_the_master_with_locusts_exact_counts(tmp_path):
    run = locust(
        *("-u", "4", "-r", "4", "-t", "6s", "--think-time", "0.2", "--processes", "2"),
        *("--target-args", TARGET_ARGS, "--probe-users", "0"),
        *("--results", str(tmp_path / "run"), "--json-file", str(tmp_path / "stats")),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    samples = load_samples(tmp_path / "run")
    rows = samples.loc[samples["kind"] != "health"]
    final = {
        e["name"]: e["num_requests"] for e in json.loads((tmp_path / "stats.json").read_text())
    }
    counts = rows.groupby("name").size().to_dict()
    # Locust's final stats and the rows hold whole turns: (TOKENS - 1) gaps per streamed turn
    # (on a saturated machine Locust may write its totals before a worker's last report)
    for got in (final, counts):
        assert got["turn:itl"] == (TOKENS - 1) * got["turn:ttft"] > 0
        assert got["turn:ttft"] == got["turn:output_tokens"]
    streamed = rows.loc[rows["kind"] == "stream"]
    assert set(streamed["node"]) == {"w0", "w1"}
    assert (rows.loc[rows["name"] == "turn:output_tokens", "ms"] == TOKENS).all()
    itl = rows.loc[rows["name"] == "turn:itl", "ms"]
    assert abs(itl.median() - INTERVAL_MS) <= 2, itl.describe()
