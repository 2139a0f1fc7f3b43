"""A real Prometheus (Debian's ``prometheus``, ``make prometheus``) scrapes ``/metrics`` of a
real distributed run (a master and two workers, the embedded target with faults and
streamed answers), and its HTTP API agrees with the run folder: turns, failures by
taxonomy id, the security finding, output tokens, a stage's p95 within the bucket of the
exact p95; every query of the Grafana dashboard ``examples/grafana/wsload.json`` parses
and returns data from that run."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from wsload.metrics.series import LATENCY_BUCKETS_S
from wsload.run.summary import load_samples
from wsload.run.tables import is_run_folder

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "examples" / "grafana" / "wsload.json"
LOCUST = [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py"]
FAULTS = "--skip-events 0.1 --drop-mid-turn 0.03 --auth-mode relaxed --stream-tokens 4"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="Debian's prometheus: run make prometheus"
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A real Prometheus server on a loopback port scraping one target every second."""

    def __init__(self, folder: Path, target_port: int) -> None:
        self.port = free_port()
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: wsload\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.log = (folder / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}"]
            + [f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("Prometheus did not become ready in 30 s")

    def api(self, path: str, **params: object) -> dict:
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:  # a bad query: 400 with the parser's message
            return json.loads(error.read())

    def instant(self, expr: str) -> list[dict]:
        answer = self.api("query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def scraped_run(tmp_path_factory):
    """A distributed run scraped by Prometheus: (prometheus, run folder, start, end)."""
    folder = tmp_path_factory.mktemp("prometheus")
    metrics_port, master_port = free_port(), free_port()
    prometheus = Prometheus(folder, metrics_port)
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    logs = {name: (folder / f"{name}.log").open("w") for name in ("master", "w0", "w1")}
    started = time.time()
    master = subprocess.Popen(
        [*LOCUST, "--master", "--master-bind-host", "127.0.0.1"]
        + ["--master-bind-port", str(master_port), "--expect-workers", "2", "--headless"]
        + ["-u", "20", "-r", "20", "-t", "10s", "--think-time", "0.2", "--token-lifetime", "4"]
        + ["--target-args", FAULTS, "--no-security-gate", "--results", str(folder / "run")]
        + ["--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"],
        cwd=REPO,
        env=env,
        stdout=logs["master"],
        stderr=subprocess.STDOUT,
    )
    workers = [
        subprocess.Popen(
            [*LOCUST, "--worker", "--master-port", str(master_port)],
            cwd=REPO,
            env=env,
            stdout=logs[f"w{i}"],
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    try:
        master.wait(timeout=90)
        for worker in workers:
            worker.wait(timeout=30)
        ended = time.time()
        for log in logs.values():
            log.close()
        assert is_run_folder(folder / "run"), (folder / "master.log").read_text()
        yield prometheus, folder / "run", started, ended
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
        prometheus.stop()


def last(prometheus: Prometheus, expr: str) -> list[dict]:
    """``expr``'s last values in the run (the target is gone: its series are stale now)."""
    return prometheus.instant(f"last_over_time({expr}[5m])")


def test_turns_and_failures_by_taxonomy_id_in_prometheus_equal_the_run_folder(scraped_run):
    prometheus, run, _, _ = scraped_run
    samples = load_samples(run)
    turns = samples.loc[samples["name"] == "turn:e2e"]
    (completed,) = last(prometheus, "wsload_turns_completed_total")
    assert len(turns) > 100 and float(completed["value"][1]) == len(turns)
    (started,) = last(prometheus, "wsload_turns_started_total")
    assert float(started["value"][1]) == len(turns)  # nothing in flight at the end
    failed = turns.loc[~turns["ok"]].groupby("failure").size().to_dict()
    scraped = {
        row["metric"]["failure"]: float(row["value"][1])
        for row in last(prometheus, "wsload_turns_failed_total")
    }
    assert "sequence_missing" in failed and scraped == failed
    probes = samples.loc[samples["kind"] == "probe"]
    findings = probes.loc[probes["failure"] == "auth_not_enforced"].groupby("name").size()
    scraped = {
        row["metric"]["probe"]: float(row["value"][1])
        for row in last(prometheus, "wsload_auth_not_enforced_total")
    }
    assert len(findings) > 0 and scraped == findings.to_dict()
    tokens = samples.loc[samples["name"] == "turn:output_tokens", "ms"].sum()
    (streamed,) = last(prometheus, "wsload_output_tokens_total")
    assert tokens > 0 and float(streamed["value"][1]) == tokens
    connects = samples.loc[samples["kind"] == "connect"]
    (ok,) = last(prometheus, 'wsload_connects_total{outcome="ok"}')
    assert float(ok["value"][1]) == int(connects["ok"].sum())


def test_a_stage_p95_from_the_histogram_lies_in_the_bucket_of_the_exact_p95(scraped_run):
    prometheus, run, _, _ = scraped_run
    samples = load_samples(run)
    for stage in ("e2e", "ttfe", "ttft", "itl"):
        values = sorted(samples.loc[samples["name"] == f"turn:{stage}", "ms"].astype(float))
        exact_s = values[math.ceil(0.95 * len(values)) - 1] / 1000.0  # nearest rank
        (row,) = prometheus.instant(
            "histogram_quantile(0.95, sum by (le) (last_over_time("
            f'wsload_turn_stage_seconds_bucket{{stage="{stage}"}}[5m])))'
        )
        estimate = float(row["value"][1])
        bounds = (0.0, *LATENCY_BUCKETS_S)
        upper = next(i for i, bound in enumerate(bounds) if exact_s <= bound)
        assert bounds[upper - 1] <= estimate <= bounds[upper], (stage, exact_s, estimate)


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    return queries


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables as Grafana sends them for this dashboard ("All" selected; a rate
    interval of several scrapes, as Grafana's own is at least four)."""
    return expr.replace("$__rate_interval", "10s").replace("$job", ".*").replace("$stage", ".*")


def test_every_dashboard_query_parses_and_returns_data_from_the_run(scraped_run):
    prometheus, _, started, ended = scraped_run
    queries = dashboard_queries()
    assert len(queries) >= 15
    empty = []
    for title, expr in queries:
        answer = prometheus.api(
            "query_range", query=grafana_to_promql(expr), start=started, end=ended, step=1
        )
        assert answer["status"] == "success", (title, expr, answer.get("error"))
        if not any(series["values"] for series in answer["data"]["result"]):
            empty.append((title, expr))
    assert not empty, empty
