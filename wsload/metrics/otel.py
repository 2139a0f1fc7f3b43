"""wsload's metrics through OpenTelemetry, as Locust's ``--otel`` set-up configures it.

Nothing of its own to configure: ``--otel`` turns it on, and the standard ``OTEL_*``
variables Locust reads choose the exporters (OTLP over gRPC or HTTP, console), endpoint,
headers and export interval; the resource (service name, host) is the one Locust's set-up
made. Each generator process exports its own cumulative figures with a ``node`` attribute
(``w0``, ``w1``..., ``master`` or ``local``); a collector adds them up.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from wsload.errors import ConfigError
from wsload.metrics.series import LATENCY_BUCKETS_S, METRICS, Snapshot

log = logging.getLogger("wsload")

_EXPORTERS = {
    "OTEL_METRICS_EXPORTER": ("otlp", "console", "none"),
    "OTEL_TRACES_EXPORTER": ("otlp", "console", "none"),
    "OTEL_LOGS_EXPORTER": ("otlp", "console", "none"),
}
_PROTOCOLS = ("grpc", "http/protobuf", "http")
_SIGNALS = ("", "_METRICS", "_TRACES", "_LOGS")
_MILLISECONDS = (
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_METRIC_EXPORT_TIMEOUT",
    *(f"OTEL_EXPORTER_OTLP{signal}_TIMEOUT" for signal in _SIGNALS),
)
_PAIRS = (
    "OTEL_RESOURCE_ATTRIBUTES",
    *(f"OTEL_EXPORTER_OTLP{signal}_HEADERS" for signal in _SIGNALS),
)


def check_otel_environment(env: Mapping[str, str] | None = None) -> None:
    """The ``OTEL_*`` settings ``--otel`` reads, checked before load: a ``ConfigError``
    naming the variable (never its value where it may hold a secret) and the fix."""
    env = os.environ if env is None else env
    try:
        import opentelemetry.sdk.metrics  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--otel needs the OpenTelemetry SDK, which is not installed",
            fix="pip install 'wsload[otel]' (Locust's locust[otel] extra)",
        ) from None
    for name, allowed in _EXPORTERS.items():
        for value in _items(env.get(name, "")):
            if value not in allowed:
                raise ConfigError(
                    f"{name}={value!r} is not an exporter wsload and Locust can use",
                    fix=f"set {name} to one or more of {', '.join(allowed)} (comma-separated)",
                )
    for signal in _SIGNALS:
        name = f"OTEL_EXPORTER_OTLP{signal}_PROTOCOL"
        value = env.get(name, "").strip().lower()
        if value and value not in _PROTOCOLS:
            raise ConfigError(
                f"{name}={value!r} is not an OTLP protocol",
                fix=f"set {name} to grpc or http/protobuf",
            )
        name = f"OTEL_EXPORTER_OTLP{signal}_ENDPOINT"
        value = env.get(name, "").strip()
        if value and not _endpoint(value):
            raise ConfigError(
                f"{name} is not an endpoint URL",
                fix=f"set {name} like http://collector:4317 (gRPC) or :4318 (HTTP)",
            )
    for name in _MILLISECONDS:
        value = env.get(name, "").strip()
        if value and not _positive_number(value):
            raise ConfigError(
                f"{name}={value!r} is not a number of milliseconds",
                fix=f"set {name} to a whole number of milliseconds greater than 0, e.g. 5000",
            )
    for name in _PAIRS:
        for item in _items(env.get(name, ""), lower=False):
            if "=" not in item or not item.split("=", 1)[0].strip():
                raise ConfigError(
                    f"{name} is not a list of key=value pairs",
                    fix=f"set {name} like key1=value1,key2=value2",
                )


def _items(value: str, *, lower: bool = True) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    return [item.lower() for item in items] if lower else items


def _positive_number(value: str) -> bool:
    try:
        return float(value) > 0
    except ValueError:
        return False


def _endpoint(value: str) -> bool:
    """An http(s) URL with a host, or the bare ``host:port`` the gRPC exporter also takes."""
    if "://" not in value:
        host, _, port = value.rpartition(":")
        return bool(host) and port.isdigit()
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def metric_exporters(env: Mapping[str, str] | None = None) -> list[Any]:
    """The metric exporters ``OTEL_METRICS_EXPORTER`` names, as Locust's ``--otel`` picks them
    (OTLP over gRPC or HTTP by ``OTEL_EXPORTER_OTLP[_METRICS]_PROTOCOL``, or the console);
    each reads its endpoint, headers and timeouts from the ``OTEL_*`` variables itself."""
    env = os.environ if env is None else env
    exporters: list[Any] = []
    for name in _items(env.get("OTEL_METRICS_EXPORTER", "otlp")):
        if name == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            exporters.append(ConsoleMetricExporter())
        elif name == "otlp":
            protocol = env.get(
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            )
            if protocol.strip().lower() == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                    OTLPMetricExporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                    OTLPMetricExporter,
                )
            exporters.append(OTLPMetricExporter())
    return exporters


def export_interval_s(env: Mapping[str, str] | None = None) -> float:
    """``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds, 60000 by default) in seconds."""
    env = os.environ if env is None else env
    return float(env.get("OTEL_METRIC_EXPORT_INTERVAL", "") or 60000) / 1000.0


def locust_resource() -> Any:
    """The resource Locust's ``--otel`` set-up describes the process with (service name,
    version, host), so wsload's figures sit next to Locust's own."""
    from opentelemetry import metrics
    from opentelemetry.sdk.resources import Resource

    provider = metrics.get_meter_provider()
    resource = getattr(getattr(provider, "_sdk_config", None), "resource", None)
    if isinstance(resource, Resource):
        return resource
    return Resource.create({"service.name": os.getenv("OTEL_SERVICE_NAME", "locust")})


def metrics_data(snapshot: Snapshot, node: str, resource: Any, start_ns: int, now_ns: int) -> Any:
    """A process's cumulative series as OpenTelemetry's export data: monotonic sums,
    gauges and explicit-bucket histograms (in seconds), each point with a ``node``."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    cumulative = AggregationTemporality.CUMULATIVE
    bounds = list(LATENCY_BUCKETS_S)
    out = []
    for metric in METRICS:
        labels = metric.labels
        if metric.kind == "histogram":
            points: list[Any] = [
                HistogramDataPoint(
                    attributes=_attributes(node, labels, values),
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now_ns,
                    count=sum(counts),
                    sum=total_ms / 1000.0,
                    bucket_counts=list(counts),
                    explicit_bounds=bounds,
                    min=None,  # type: ignore[arg-type]  # not kept: optional in OTLP
                    max=None,  # type: ignore[arg-type]
                )
                for (name, values), (counts, total_ms) in snapshot.histograms.items()
                if name == metric.name
            ]
            data: Any = Histogram(points, cumulative)
        else:
            table = snapshot.counters if metric.kind == "counter" else snapshot.gauges
            points = [
                NumberDataPoint(_attributes(node, labels, values), start_ns, now_ns, value)
                for (name, values), value in table.items()
                if name == metric.name
            ]
            data = Sum(points, cumulative, True) if metric.kind == "counter" else Gauge(points)
        if points:
            out.append(Metric(metric.otel, metric.help, metric.unit, data))
    scope = InstrumentationScope("wsload")
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, out, "")], "")])


def _attributes(node: str, labels: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str]:
    return {"node": node, **dict(zip(labels, values, strict=True))}


class OtelExport:
    """Hands the process's cumulative series to the exporters every export interval.

    Not through the meter API: it takes one call per value (5-10 us each in the SDK), which
    at tens of thousands of samples a second would cost the generator about as much as the
    load itself; the series are already aggregated, so they go to the exporters as they are.
    """

    def __init__(self, node: str, snapshot: Callable[[], Snapshot]) -> None:
        self.node = node
        self.snapshot = snapshot
        self.exporters = metric_exporters()
        self.resource = locust_resource()
        self.start_ns = time.time_ns()

    def export(self) -> None:
        data = metrics_data(
            self.snapshot(), self.node, self.resource, self.start_ns, time.time_ns()
        )
        for exporter in self.exporters:
            try:
                exporter.export(data)
            except Exception:  # an exporter's failure must not stop the load
                log.exception("OpenTelemetry export failed")

    def shutdown(self) -> None:
        """The last figures, then the exporters closed."""
        self.export()
        for exporter in self.exporters:
            exporter.shutdown()
