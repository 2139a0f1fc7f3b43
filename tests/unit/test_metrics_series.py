"""Records into metric series: every turn sample lands in its stage's histogram, outcomes
count by taxonomy id, labels stay bounded, snapshots add up over processes and survive the
wire, and the exposition is prometheus_client's."""

from __future__ import annotations

import msgpack
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from wsload import taxonomy
from wsload.errors import ConfigError
from wsload.metrics.otel import check_otel_environment
from wsload.metrics.prometheus import MetricsServer, SnapshotCollector
from wsload.metrics.series import (
    LATENCY_BUCKETS_S,
    METRICS,
    Snapshot,
    Tap,
    merged,
)
from wsload.net.probes import ProbeResult
from wsload.protocol.streaming import StreamMetrics
from wsload.protocol.tracker import TurnResult
from wsload.run.records import (
    ConnectionAttempt,
    HealthTick,
    ProbeRecord,
    SessionEvent,
    TurnRecord,
    Who,
)

WHO = Who(3, "user-secret-subject", "w0-3-1")


def turn(e2e: float, *, failure: str | None = None, streamed: bool = False) -> TurnRecord:
    first = {"agent_started": e2e / 4, "agent_completed": e2e}
    stream = StreamMetrics(e2e / 8, [2.0, 3.0, 4.0], e2e / 2, 4, 40, 8, 9) if streamed else None
    result = TurnResult(
        ok=failure is None,
        failures=[(failure, "detail")] if failure else [],
        ttfe_ms=e2e / 4,
        e2e_ms=e2e,
        elapsed_ms=e2e,
        first_ms=first,
        gaps_ms=[1.0, 2.0, 3.0],
        spans_ms=[("tool", 7.0)],
        events=5,
        names=[],
        run_id=None,
        terminal="agent_completed",
        stream=stream,
    )
    return TurnRecord(1.0, WHO, 1, 1, 10, result)


def stage_counts(snapshot: Snapshot) -> dict[str, int]:
    return {
        labels[0]: sum(counts)
        for (name, labels), (counts, _) in snapshot.histograms.items()
        if name == "wsload_turn_stage_seconds"
    }


def test_every_latency_sample_of_a_turn_lands_in_the_histogram_of_its_stage():
    tap = Tap("w0")
    records = [turn(100.0), turn(200.0, streamed=True), turn(50.0, failure=taxonomy.EVENT_TIMEOUT)]
    tap.aggregate(records)
    want: dict[str, int] = {}
    for record in records:
        for sample in record.samples():
            if sample.name in ("turn:output_tokens", "turn:tokens_per_s"):
                continue  # a count and a rate, not milliseconds
            stage = sample.name.removeprefix("turn:")
            want[stage] = want.get(stage, 0) + 1
    snapshot = tap.snapshot()
    assert stage_counts(snapshot) == want
    assert want["ttft"] == 1 and want["itl"] == 3 and want["tpot"] == 1 and want["gap"] == 9
    counts, total_ms = snapshot.histograms[("wsload_turn_stage_seconds", ("itl",))]
    assert total_ms == pytest.approx(9.0) and sum(counts) == 3
    assert snapshot.value("wsload_output_tokens") == 9
    counts, total_ms = snapshot.histograms[("wsload_turn_stage_seconds", ("e2e",))]
    assert total_ms == pytest.approx(350.0)
    bounds_ms = [b * 1000 for b in LATENCY_BUCKETS_S]
    assert counts[bounds_ms.index(100.0)] == 1  # a value on a bound is in that bucket (le)


def test_turns_count_by_outcome_and_started_includes_those_in_flight():
    inflight = [2]
    tap = Tap("w0", inflight=lambda: inflight[0], open_sessions=lambda: 5)
    tap.add(turn(10.0))
    tap.add(turn(10.0, failure=taxonomy.SEQUENCE_MISSING))
    tap.add(turn(10.0, failure=taxonomy.SEQUENCE_MISSING))
    tap.aggregate(tap.take())
    snapshot = tap.snapshot()
    assert snapshot.value("wsload_turns_completed") == 3
    assert snapshot.value("wsload_turns_failed", "sequence_missing") == 2
    assert snapshot.value("wsload_turns_started") == 5
    assert snapshot.value("wsload_open_sessions") == 5
    assert tap.take() == []


def test_connects_auth_probes_sessions_and_health_count_with_bounded_labels():
    tap = Tap("w1")
    ok = ConnectionAttempt(1.0, WHO, 1, 5.0, 2.0, tls_ms=3.0)  # over wss://
    refused = ConnectionAttempt(1.0, WHO, 1, 3.0, None, taxonomy.REFUSED, "connect")
    rejected = ConnectionAttempt(1.0, WHO, 1, 4.0, 1.0, taxonomy.AUTH_REJECTED, "auth")
    accepted = ProbeResult("expired", False, "accepted", taxonomy.AUTH_NOT_ENFORCED, 3.0, "")
    refused_probe = ProbeResult("alg_none", True, "http_401", None, 2.0, "")
    records = [
        ok,
        refused,
        rejected,
        ProbeRecord(1.0, WHO, "probe:expired", "probe", accepted),
        ProbeRecord(1.0, WHO, "probe:alg_none", "probe", refused_probe),
        SessionEvent(1.0, WHO, "session:refresh", 3.0),
        SessionEvent(1.0, WHO, "session:disconnect", 0.0, "disconnected_1006"),
        HealthTick(1.0, 42.0, 12.0, users=7),
    ]
    tap.aggregate(records)
    s = tap.snapshot()
    assert s.value("wsload_connects", "ok") == 2 and s.value("wsload_connects", "refused") == 1
    assert s.value("wsload_auth", "ok") == 1 and s.value("wsload_auth", "auth_rejected") == 1
    assert s.value("wsload_auth_not_enforced", "probe:expired") == 1
    assert s.value("wsload_probes", "probe:alg_none", "ok") == 1
    assert s.value("wsload_session_events", "session:refresh", "ok") == 1
    assert s.value("wsload_session_events", "session:disconnect", "disconnected_1006") == 1
    assert s.value("wsload_generator_cpu_percent", "w1") == 42.0
    assert s.value("wsload_event_loop_lag_seconds", "w1") == pytest.approx(0.012)
    assert s.value("wsload_users") == 7
    assert sum(s.histograms[("wsload_handshake_seconds", ("connect",))][0]) == 2
    assert sum(s.histograms[("wsload_handshake_seconds", ("tls",))][0]) == 1
    labels = {v for table in (s.counters, s.gauges) for _, values in table for v in values}
    assert not labels & {WHO.subject, WHO.session, str(WHO.user)}


def test_snapshots_add_up_over_processes_and_survive_the_wire():
    taps = [Tap(f"w{i}") for i in range(2)]
    for i, tap in enumerate(taps):
        tap.aggregate([turn(10.0 * (i + 1)), HealthTick(1.0, 10.0 * (i + 1), 1.0)])
    wired = [
        Snapshot.from_wire(msgpack.unpackb(msgpack.packb(t.snapshot().to_wire()))) for t in taps
    ]
    total = merged(wired)
    assert total.value("wsload_turns_completed") == 2
    assert total.value("wsload_generator_cpu_percent", "w0") == 10.0
    assert total.value("wsload_generator_cpu_percent", "w1") == 20.0
    counts, total_ms = total.histograms[("wsload_turn_stage_seconds", ("e2e",))]
    assert sum(counts) == 2 and total_ms == pytest.approx(30.0)


def test_the_exposition_is_prometheus_clients_and_parses_back():
    tap = Tap("local")
    tap.aggregate([turn(120.0), turn(30.0, failure=taxonomy.AGENT_ERROR)])
    collector = SnapshotCollector(tap.snapshot)
    server_text = generate_latest(_Registry(collector)).decode()
    families = {f.name: f for f in text_string_to_metric_families(server_text)}
    assert {m.name.removesuffix("_seconds") for m in METRICS} >= {
        name.removesuffix("_seconds") for name in families
    }
    (completed,) = families["wsload_turns_completed"].samples
    assert completed.name == "wsload_turns_completed_total" and completed.value == 2
    e2e = [s for s in families["wsload_turn_stage_seconds"].samples if s.labels["stage"] == "e2e"]
    buckets = {s.labels["le"]: s.value for s in e2e if s.name.endswith("_bucket")}
    assert buckets["0.1"] == 1 and buckets["0.15"] == 2 and buckets["+Inf"] == 2


class _Registry:
    def __init__(self, collector) -> None:
        self.collector = collector

    def collect(self):
        return self.collector.collect()


def test_a_busy_metrics_port_is_one_config_error_naming_the_option():
    first = MetricsServer("127.0.0.1", 0, Snapshot)
    try:
        with pytest.raises(ConfigError) as caught:
            MetricsServer("127.0.0.1", first.port, Snapshot)
        message = str(caught.value)
        assert f"--metrics-port {first.port}" in message and "in use" in message
        assert "fix: pass a free port" in message
    finally:
        first.server.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_METRICS_EXPORTER", "prometheus-remote"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "collector/v1/metrics"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:port"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "5s"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization Bearer s3cret-token"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team"),
    ],
)
def test_a_malformed_otel_setting_is_one_config_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as caught:
        check_otel_environment({name: value})
    assert name in str(caught.value) and "fix: set " + name in str(caught.value)
    assert "s3cret" not in str(caught.value)  # headers may carry credentials


def test_well_formed_otel_settings_pass():
    check_otel_environment(
        {
            "OTEL_METRICS_EXPORTER": "otlp,console",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "localhost:4317",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer x,team=load",
            "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=load",
        }
    )
