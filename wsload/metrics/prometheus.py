"""``/metrics`` for Prometheus: the run's series, merged over every generator process.

Served by the process that sees the whole run (a standalone process, or the master in
distributed mode with each worker's latest cumulative figures added in), so Prometheus
scrapes one target whatever the number of workers. The exposition text is made by
``prometheus_client`` from a custom collector; the HTTP server is gevent's, on the
process's own event loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
from gevent.pywsgi import WSGIServer
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from wsload.errors import ConfigError
from wsload.metrics.series import LATENCY_BUCKETS_S, METRICS, Snapshot

_LE = [floatToGoString(bound) for bound in LATENCY_BUCKETS_S] + ["+Inf"]


class SnapshotCollector(Collector):
    """Every wsload metric from the snapshot ``source`` gives at scrape time."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []  # nothing fixed to describe: families come from the snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self.source()
        for metric in METRICS:
            labels = list(metric.labels)
            if metric.kind == "counter":
                family: Metric = CounterMetricFamily(metric.name, metric.help, labels=labels)
                series = _series(snapshot.counters, metric.name)
            elif metric.kind == "gauge":
                family = GaugeMetricFamily(metric.name, metric.help, labels=labels)
                series = _series(snapshot.gauges, metric.name)
            else:
                family = HistogramMetricFamily(metric.name, metric.help, labels=labels)
                for values, (counts, total_ms) in _series(snapshot.histograms, metric.name):
                    cumulative, buckets = 0, []
                    for le, count in zip(_LE, counts, strict=True):
                        cumulative += count
                        buckets.append((le, float(cumulative)))
                    family.add_metric(list(values), buckets, total_ms / 1000.0)
                yield family
                continue
            for values, value in series:
                family.add_metric(list(values), value)
            yield family


def _series(table: dict[Any, Any], name: str) -> list[tuple[tuple[str, ...], Any]]:
    return sorted((labels, value) for (metric, labels), value in table.items() if metric == name)


class MetricsServer:
    """gevent's WSGI server with ``prometheus_client``'s app; remembers when it was scraped."""

    def __init__(self, host: str, port: int, source: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(source))
        self._app = make_wsgi_app(self.registry)
        self.scrapes: list[float] = []  # monotonic start times of the last scrapes
        self.answered = 0.0  # when the last scrape's figures were made
        self.server = WSGIServer((host, port), self._serve, log=None, error_log=None)
        try:
            self.server.init_socket()
        except OSError as exc:
            where = f"{host or '0.0.0.0'}:{port}"
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(
                f"--metrics-port {port}: cannot listen on {where} ({why})",
                fix="pass a free port to --metrics-port (or stop what listens on it)",
            ) from None
        self.port: int = self.server.socket.getsockname()[1]

    def _serve(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"wsload serves /metrics\n"]
        started = time.monotonic()  # before reading the figures
        self.scrapes = [*self.scrapes[-9:], started]
        answer = self._app(environ, start_response)
        self.answered = max(self.answered, started)
        return answer

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(timeout=1.0)

    def wait_for_scrape(self, cap_s: float = 30.0) -> bool:
        """After the last figures: until Prometheus scraped once more, so it has them.

        Only when something has been scraping, and at most twice the interval it scraped
        at (bounded by ``cap_s``); True when a scrape that started after the call has its
        answer.
        """
        if len(self.scrapes) < 2:
            return False
        interval = self.scrapes[-1] - self.scrapes[-2]
        since = time.monotonic()
        deadline = since + min(cap_s, 2.0 * interval + 0.5)
        while time.monotonic() < deadline:
            if self.answered > since:
                gevent.sleep(0.05)  # the answer on its way out
                return True
            gevent.sleep(0.05)
        return False
