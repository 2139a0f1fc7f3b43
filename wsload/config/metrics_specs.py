"""The options of live metrics: the Prometheus endpoint (OpenTelemetry is Locust's ``--otel``
with the standard ``OTEL_*`` variables, so it needs no option of its own)."""

from __future__ import annotations

from wsload.config.spec import OptionSpec

METRICS_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "--metrics-port",
        "WSLOAD_METRICS_PORT",
        "serve live metrics for Prometheus on this port at /metrics (the master serves the "
        "whole run's, workers' figures merged; default: off)",
        None,
        int,
        web_ui=False,
    ),
    OptionSpec(
        "--metrics-host",
        "WSLOAD_METRICS_HOST",
        "address the /metrics endpoint listens on (default: every interface)",
        "",
        web_ui=False,
    ),
)
