"""Live metrics in Locust processes: each process aggregates its own records once a second;
workers send their cumulative figures to the master, which serves ``/metrics`` with them
merged; with ``--otel`` every process also exports through Locust's OpenTelemetry set-up.

The metrics never need the master to see every record: a worker's snapshot is a few
hundred numbers whatever the load, so ``/metrics`` stays right however records are
shipped. Off (no tap on the records' path) unless ``--metrics-port`` or ``--otel`` is
given.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import gevent
import gevent.event
import gevent.lock
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from wsload.errors import EXIT_CONFIG_ERROR, ConfigError
from wsload.locust.chat_connection import LINKS
from wsload.locust.process import PROCESS
from wsload.locust.runtime import recording_for
from wsload.metrics.series import Snapshot, Tap, merged

log = logging.getLogger("wsload")

METRICS_MESSAGE = "wsload_metrics"
AGGREGATE_INTERVAL_S = 1.0


def node_label(environment: Environment) -> str:
    """The ``node`` label of a process's own series: ``w<index>``, ``master`` or ``local``."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return f"w{runner.worker_index}"
    return "master" if isinstance(runner, MasterRunner) else "local"


def _inflight_turns() -> int:
    runtime = PROCESS.runtime
    return runtime.inflight_turns if runtime is not None else 0


def _open_sessions() -> int:
    return sum(1 for link in list(LINKS) if link.open)


class LiveMetrics:
    """One process's tap, its aggregation loop, and where its figures go."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.node = node_label(environment)
        self.tap = Tap(self.node, _inflight_turns, _open_sessions)
        self.published = Snapshot()  # this process's figures as of the last aggregation
        self.workers: dict[str, Snapshot] = {}  # on a master: each worker's latest figures
        self.server: Any = None  # MetricsServer, on a master or standalone process
        self.otel: Any = None  # OtelExport, with --otel
        self._exporting: gevent.Greenlet | None = None
        self._pool = gevent.get_hub().threadpool
        self._loop: gevent.Greenlet | None = None
        self._stop = gevent.event.Event()
        self._lock = gevent.lock.BoundedSemaphore()  # one aggregation at a time
        recording_for(environment).tap = self.tap.add

    def serve(self, host: str, port: int) -> None:
        from wsload.metrics.prometheus import MetricsServer

        self.server = MetricsServer(host, port, self.whole_run)
        self.server.start()
        log.info("serving live metrics on http://%s:%d/metrics", host or "0.0.0.0", port)

    def export_otel(self) -> None:
        from wsload.metrics.otel import OtelExport, export_interval_s

        self.otel = OtelExport(self.node, lambda: self.published)
        self._exporting = gevent.spawn(self._export_forever, export_interval_s())

    def _export_forever(self, interval_s: float) -> None:
        while True:
            gevent.sleep(interval_s)
            self.otel.export()

    def close(self) -> None:
        """Last figures out: the final scrape (bounded wait) and the final export."""
        self.stop()
        if self.server is not None:
            self.server.wait_for_scrape()
            self.server.stop()
        if self._exporting is not None:
            self._exporting.kill(block=True)
            self._exporting = None
            self.otel.shutdown()

    def whole_run(self) -> Snapshot:
        """This process's figures and every worker's, added up."""
        return merged([self.published, *self.workers.values()])

    def start(self) -> None:
        if self._loop is None:
            self._stop.clear()
            self._loop = gevent.spawn(self._aggregate_forever)

    def stop(self) -> None:
        """The last figures now (the users stopped); a worker sends them to the master."""
        if self._loop is not None:
            self._stop.set()
            self._loop.join()
            self._loop = None
        self.aggregate()

    def aggregate(self) -> None:
        """Take what came in, aggregate it on a native thread (the users keep running), then
        publish and (on a worker) ship the new figures."""
        with self._lock:
            records = self.tap.take()
            if records:
                self._pool.apply(self.tap.aggregate, (records,))
            self.published = self.tap.snapshot()
            runner = self.environment.runner
            if isinstance(runner, WorkerRunner) and metrics_port(self.environment):
                runner.send_message(METRICS_MESSAGE, self.published.to_wire())  # master serves

    def _aggregate_forever(self) -> None:
        while not self._stop.wait(AGGREGATE_INTERVAL_S):
            self.aggregate()

    def on_worker_figures(self, msg: Any, **_: Any) -> None:
        self.workers[msg.node_id] = Snapshot.from_wire(msg.data)


class _State:
    metrics: LiveMetrics | None = None


_now = _State()


def metrics_port(environment: Environment) -> int | None:
    """``--metrics-port`` checked: None when off."""
    port = getattr(environment.parsed_options, "metrics_port", None)
    if port in (None, "", 0):
        return None
    port = int(port)
    if not 0 < port < 65536:
        raise ConfigError(
            f"--metrics-port {port} is not a TCP port", fix="pass a port between 1 and 65535"
        )
    return port


def start_metrics(environment: Environment) -> None:
    """At init: the tap, ``/metrics`` (standalone or master) and the OpenTelemetry
    instruments, as the options ask. Raises ``ConfigError`` on a busy port or a malformed
    ``OTEL_*`` setting, before any user starts."""
    options = environment.parsed_options
    otel = bool(getattr(options, "otel", False))
    runner = environment.runner
    worker = isinstance(runner, WorkerRunner)
    port = None if worker else metrics_port(environment)  # a worker learns it at test start
    if otel:
        from wsload.metrics.otel import check_otel_environment

        check_otel_environment()
    if port is None and not otel:
        return
    live = _now.metrics = LiveMetrics(environment)
    if isinstance(runner, MasterRunner):
        runner.register_message(METRICS_MESSAGE, live.on_worker_figures)
    if port is not None:
        live.serve(getattr(options, "metrics_host", "") or "", port)
    if otel:
        live.export_otel()
    if not worker:
        live.start()


@events.init_command_line_parser.add_listener
def _check_otel_first(**_: Any) -> None:
    """``--otel`` on the command line or in its environment variable: the ``OTEL_*``
    settings checked before Locust sets the SDK up from them (which would only warn)."""
    flag = "--otel" in sys.argv[1:]
    env = os.environ.get("LOCUST_ENABLE_OPENTELEMETRY", "").strip().lower()
    if not flag and env not in ("1", "true", "yes", "on"):
        return
    from wsload.metrics.otel import check_otel_environment

    try:
        check_otel_environment()
    except ConfigError as error:
        print(f"wsload: error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CONFIG_ERROR)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    """A worker aggregates when it exports itself or the master serves ``/metrics``."""
    if not isinstance(environment.runner, WorkerRunner):
        return
    if _now.metrics is None and getattr(environment.parsed_options, "metrics_port", None):
        _now.metrics = LiveMetrics(environment)
    if _now.metrics is not None:
        _now.metrics.start()


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    """The users stopped: their last figures, on a worker sent before its last records."""
    live = _now.metrics
    if live is None:
        return
    if isinstance(environment.runner, WorkerRunner):
        live.stop()
    else:
        live.aggregate()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    """Keep ``/metrics`` up until Prometheus has scraped the final figures (bounded), and
    export the final figures through OpenTelemetry."""
    if _now.metrics is not None:
        _now.metrics.close()
