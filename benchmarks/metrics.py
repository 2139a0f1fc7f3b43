"""What live metrics cost: aggregation per record, and turns/s with metrics off and on.

    .venv/bin/python benchmarks/metrics.py                 # about 3 minutes
    .venv/bin/python benchmarks/metrics.py --repeats 3 --window 8

* ``aggregate``: records/s one core aggregates into the series (``Tap.aggregate``), for
  turn records of the reference target's shape (5 events, 4 gaps, a tool span), and what
  building one OpenTelemetry export of the series costs.
* ``turns``: the full ChatUser path (``benchmarks/generator.py``'s set-up: target and
  generator pinned to one core each, delays 0), interleaved in the same session: metrics
  off, ``--metrics-port`` scraped every second as Prometheus would, and ``--otel`` exporting
  every second (console exporter into /dev/null). Medians and per-repeat ratios to off,
  of turns/s and of turns per generator CPU-second (what one core yields: it holds when
  other work on the machine takes CPU from the generator, which turns/s does not).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from generator import FAST_TURN, fresh_target, locust, measure_process, rate  # noqa: E402

from wsload.metrics.series import Tap  # noqa: E402
from wsload.protocol.tracker import TurnResult  # noqa: E402
from wsload.run.records import TurnRecord, Who  # noqa: E402
from wsload.run.summary import load_samples  # noqa: E402

OTEL_ENV = {
    "OTEL_METRICS_EXPORTER": "console",
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
}


def sample_turn(i: int) -> TurnRecord:
    base = 40.0 + (i % 97)
    result = TurnResult(
        ok=True,
        failures=[],
        ttfe_ms=base,
        e2e_ms=base * 2,
        elapsed_ms=base * 2,
        first_ms={
            "agent_started": base,
            "agent_thinking": base + 10,
            "tool_executing": base + 20,
            "tool_completed": base + 30,
            "agent_completed": base * 2,
        },
        gaps_ms=[10.0 + i % 7, 10.0, 10.0, 10.0],
        spans_ms=[("tool", 10.0)],
        events=5,
        names=[],
        run_id=None,
        terminal="agent_completed",
    )
    return TurnRecord(time.time(), Who(i, "", ""), i, 1, 80, result)


def cpu_seconds(work) -> float:
    """The least CPU time of 5 calls (CPU time: other work on the machine barely moves it)."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def phase_aggregate(count: int) -> list[str]:
    from opentelemetry.sdk.resources import Resource

    from wsload.metrics.otel import metrics_data

    records = [sample_turn(i) for i in range(count)]
    took = cpu_seconds(lambda: Tap("bench").aggregate(records))
    lines = [
        f"aggregate: {count / took:,.0f} turn records/s of one core's CPU "
        f"({took / count * 1e6:.2f} us per record, best of 5)"
    ]
    tap = Tap("bench")
    tap.aggregate(records)
    snapshot, resource = tap.snapshot(), Resource.create({})
    took = cpu_seconds(lambda: metrics_data(snapshot, "bench", resource, 0, 1))
    lines.append(f"OpenTelemetry export data of a snapshot: {took * 1e3:.2f} ms per export")
    return lines


@contextlib.contextmanager
def scraper(port: int):
    """Scrape /metrics every second, as a Prometheus with a 1 s interval does."""
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def one_run(args, variant: str, port: int) -> tuple[float, float]:
    extra: list[str] = ["--think-time", "0", "--heartbeat-interval", "0"]
    env_before = dict(os.environ)
    if variant == "prometheus":
        extra += ["--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
    elif variant == "otel":
        extra.append("--otel")
        os.environ.update(OTEL_ENV)
    try:
        with fresh_target(*FAST_TURN) as t, tempfile.TemporaryDirectory() as tmp:
            results = Path(tmp) / "run"
            cmd = locust(
                "ws_auth.py", t.url, args.sessions, args.warm + args.window + 1, results, *extra
            )
            with scraper(port) if variant == "prometheus" else contextlib.nullcontext():
                cpu, _ = measure_process(cmd, args.warm + 1.5, args.window - 1, 120, t.pid)
            samples = load_samples(results)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    first = samples["ts"].min()
    return rate(samples, "turn:e2e", first + args.warm, first + args.warm + args.window - 1), cpu


def phase_turns(args) -> list[str]:
    variants = ("off", "prometheus", "otel")
    rates: dict[str, list[float]] = {v: [] for v in variants}
    cpus: dict[str, list[float]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        order = variants if repeat % 2 == 0 else tuple(reversed(variants))
        for variant in order:
            turns_per_s, cpu = one_run(args, variant, 19000 + repeat)
            rates[variant].append(turns_per_s)
            cpus[variant].append(cpu)
    med = statistics.median
    lines = []
    # turns per generator CPU-second: what a core yields, robust when other work on the
    # machine takes the generator's CPU away (turns/s then falls, this does not)
    per_cpu = {v: [r / c for r, c in zip(rates[v], cpus[v], strict=True)] for v in variants}
    for variant in variants:
        runs = ", ".join(f"{r:,.0f}" for r in rates[variant])
        cpu_runs = ", ".join(f"{r:,.0f}" for r in per_cpu[variant])
        lines.append(
            f"metrics {variant}: turns/s median {med(rates[variant]):,.0f} (runs {runs}; "
            f"generator CPU {med(cpus[variant]):.0%}); turns per CPU-second median "
            f"{med(per_cpu[variant]):,.0f} (runs {cpu_runs})"
        )
    for variant in variants[1:]:
        ratios = [on / off for on, off in zip(rates[variant], rates["off"], strict=True)]
        cpu_ratios = [on / off for on, off in zip(per_cpu[variant], per_cpu["off"], strict=True)]
        each = ", ".join(f"{r:.2f}" for r in ratios)
        cpu_each = ", ".join(f"{r:.2f}" for r in cpu_ratios)
        lines.append(
            f"ratio {variant} / off: turns/s median {med(ratios):.2f} (per repeat {each}); "
            f"turns per CPU-second median {med(cpu_ratios):.2f} (per repeat {cpu_each})"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="aggregate,turns")
    parser.add_argument("--records", type=int, default=50_000, help="turn records aggregated")
    parser.add_argument("--window", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warm", type=float, default=3.0, help="warm-up seconds per run")
    parser.add_argument("--sessions", type=int, default=200, help="concurrent chat sessions")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats")
    args = parser.parse_args()
    lines = []
    if "aggregate" in args.only:
        lines += phase_aggregate(args.records)
    if "turns" in args.only:
        lines += phase_turns(args)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
