"""Live metrics of a run: records aggregated per process, served to Prometheus and exported
through OpenTelemetry.

``series`` (pure) turns records into cumulative counters, histograms and gauges once a
second; ``prometheus`` serves them (merged over the workers on a master) on ``/metrics``;
``otel`` hands them to the OpenTelemetry meter Locust's ``--otel`` set up.
"""
