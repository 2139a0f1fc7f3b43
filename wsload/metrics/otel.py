"""wsload's instruments on the OpenTelemetry meter Locust's ``--otel`` set up.

Locust configures the SDK from the standard ``OTEL_*`` variables (exporters, endpoint,
protocol, interval); wsload adds its own instruments to that meter provider rather than a
second configuration. Each generator process exports its own figures with a ``node``
attribute (``w0``, ``w1``..., or ``local`` / ``master``); the collector adds them up.
Counters and gauges are observed from the process's cumulative snapshot when the reader
collects; latency histograms are recorded from the values of each second's batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from wsload.errors import ConfigError
from wsload.metrics.series import LATENCY_BUCKETS_S, METRICS, Key, Observed, Snapshot

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


class OtelInstruments:
    """wsload's instruments on ``meter``; ``snapshot`` gives the process's latest figures."""

    def __init__(self, meter: Any, node: str, snapshot: Callable[[], Snapshot]) -> None:
        self.node = node
        self.snapshot = snapshot
        self._histograms: dict[str, Any] = {}
        self._attributes: dict[Key, dict[str, str]] = {}
        for metric in METRICS:
            if metric.kind == "histogram":
                self._histograms[metric.name] = meter.create_histogram(
                    metric.otel,
                    unit=metric.unit,
                    description=metric.help,
                    explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS_S),
                )
                continue
            create = (
                meter.create_observable_counter
                if metric.kind == "counter"
                else meter.create_observable_gauge
            )
            create(
                metric.otel,
                callbacks=[self._observer(metric.name, metric.kind, metric.labels)],
                unit=metric.unit,
                description=metric.help,
            )

    def _observer(self, name: str, kind: str, labels: tuple[str, ...]) -> Callable[..., Any]:
        from opentelemetry.metrics import Observation

        def observe(_options: Any) -> Iterator[Any]:
            snapshot = self.snapshot()
            table = snapshot.counters if kind == "counter" else snapshot.gauges
            for (metric, values), value in list(table.items()):
                if metric == name:
                    yield Observation(value, self._attrs((metric, values), labels))

        return observe

    def _attrs(self, key: Key, labels: tuple[str, ...]) -> dict[str, str]:
        attrs = self._attributes.get(key)
        if attrs is None:
            attrs = dict(zip(labels, key[1], strict=True))
            attrs.setdefault("node", self.node)
            self._attributes[key] = attrs
        return attrs

    def record(self, observed: Observed) -> None:
        """One second's latency values into the histograms."""
        histograms = self._histograms
        labels = {m.name: m.labels for m in METRICS}
        for key, ms in observed:
            histograms[key[0]].record(ms / 1000.0, self._attrs(key, labels[key[0]]))
