"""wsload's instruments through Locust's ``--otel`` set-up, configured only by the standard
``OTEL_*`` variables, exported over OTLP/HTTP to a real receiver on a loopback port that
decodes the protobuf requests: the figures equal the run folder's."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pb = pytest.importorskip(
    "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
    reason="the otel extra (pip install 'wsload[otel]')",
)
from wsload.run.summary import load_samples  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Receiver:
    """An OTLP/HTTP metrics endpoint keeping every export request it was sent."""

    def __init__(self) -> None:
        self.requests: list = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = pb.ExportMetricsServiceRequest()
                request.ParseFromString(body)
                owner.requests.append((self.path, request))
                answer = pb.ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def metrics(self, name: str) -> list:
        """Every exported data point set of the instrument ``name``, in export order."""
        found = []
        for _, request in self.requests:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    found += [metric for metric in scope.metrics if metric.name == name]
        return found


def otel_env(receiver: Receiver) -> dict[str, str]:
    """Locust's environment exporting metrics only, over OTLP/HTTP to ``receiver``."""
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    env.update(
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        OTEL_SERVICE_NAME="wsload-test",
    )
    return env


def run_with_otel(receiver: Receiver, *args: str) -> subprocess.CompletedProcess:
    """A headless Locust run with ``--otel`` exporting to ``receiver`` (stopped after)."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
            + ["--otel", "--only-summary", *args],
            cwd=REPO,
            env=otel_env(receiver),
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        receiver.server.shutdown()


def test_otel_exports_wsloads_instruments_with_the_runs_own_numbers(tmp_path):
    receiver = Receiver()
    done = run_with_otel(
        receiver, "-u", "4", "-r", "4", "-t", "5s", "--think-time", "0.2",
        "--target-args", "--skip-events 0.2", "--results", str(tmp_path / "run"),
    )  # fmt: skip
    # 1: the injected turn failures fail Locust's default exit code, as in any run
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert {path for path, _ in receiver.requests} == {"/v1/metrics"}
    samples = load_samples(tmp_path / "run")
    turns = samples.loc[samples["name"] == "turn:e2e"]
    (completed, *_) = reversed(receiver.metrics("wsload.turns.completed"))
    (point,) = completed.sum.data_points
    assert completed.sum.is_monotonic and point.as_double == len(turns) > 20
    assert {a.key: a.value.string_value for a in point.attributes} == {"node": "local"}
    failed = {}
    for attrs, value in _points(receiver.metrics("wsload.turns.failed")[-1].sum.data_points):
        failed[attrs["failure"]] = value
    assert failed == turns.loc[~turns["ok"]].groupby("failure").size().to_dict()
    (stages, *_) = reversed(receiver.metrics("wsload.turn.stage.duration"))
    assert stages.unit == "s"
    by_stage: dict[str, int] = {}
    for p in stages.histogram.data_points:
        stage = next(a.value.string_value for a in p.attributes if a.key == "stage")
        by_stage[stage] = by_stage.get(stage, 0) + p.count
        assert list(p.explicit_bounds)[:3] == [0.0005, 0.001, 0.0025]
    # cumulative temporality: the last export holds every value of the run
    assert by_stage["e2e"] == len(turns)
    assert by_stage["ttfe"] == int((samples["name"] == "turn:ttfe").sum())
    assert receiver.metrics("wsload.generator.cpu") and receiver.metrics("wsload.sessions.open")


def _points(points) -> list[tuple[dict[str, str], float]]:
    return [({a.key: a.value.string_value for a in p.attributes}, p.as_double) for p in points]


def test_otel_on_a_master_with_workers_that_starts_the_embedded_target_runs_to_its_end(tmp_path):
    """The target is spawned without a Python-level fork: OpenTelemetry's at-fork hook used
    to run in the child before its exec and hang the run at start."""
    receiver = Receiver()
    done = run_with_otel(
        receiver, "--processes", "2", "-u", "4", "-r", "4", "-t", "4s", "--think-time", "0.2",
        "--results", str(tmp_path / "run"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "started the reference target" in done.stderr and "gate: PASSED" in done.stdout
    turns = load_samples(tmp_path / "run").query("name == 'turn:e2e'")
    assert len(turns) > 10
    assert receiver.metrics("wsload.turns.completed")
