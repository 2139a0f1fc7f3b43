"""One run of the load on a standalone process or a master: its folder, results writer,
``run.json``, abort watch, and at its end the summary and the gate.

A Locust process may hold several runs (the web UI starts, stops and starts again); each
gets its own folder, and its ``run.json`` says when that run started and stopped.
"""

from __future__ import annotations

import importlib
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import gevent
from gevent.threadpool import ThreadPool
from locust.env import Environment

from wsload.config.options import RunOptions
from wsload.gate import AbortWatch
from wsload.locust.process import PROCESS
from wsload.locust.recording import LocalSink, RecordsListener
from wsload.run.recorder import (
    ResultsWriter,
    new_run_id,
    prepare_run_folder,
    redact,
    redact_text,
    versions,
    write_run_json,
)
from wsload.run.records import HealthTick, Record

log = logging.getLogger("wsload")
FINAL_WAIT_S = 5.0  # how long a master waits for its workers' last records
END_OF_RUN_MODULES = (
    "duckdb",
    "pyarrow.parquet",
    "wsload.errors",
    "wsload.run.columns",
    "wsload.run.digest",
    "wsload.run.long_view",
    "wsload.run.stream_summary",
    "wsload.run.tables",
    "wsload.run.summary",
    "wsload.run.summary_sql",
    "wsload.gate.evaluate",
    "wsload.gate.tables",
    "wsload.gate.outputs",
)


class Run:
    """A run being recorded; ``finish`` ends it (once)."""

    def __init__(self, environment: Environment, options: RunOptions, node: str) -> None:
        run_id = new_run_id()
        base = options.results or None
        if base and PROCESS.runs:
            base = f"{base}-{PROCESS.runs + 1}"  # a later run of the same process
        folder = prepare_run_folder(base, run_id)  # ConfigError when unusable
        self.environment = environment
        self.options = options
        self.run_id = run_id
        from wsload.run.columns import turn_events
        from wsload.run.writer import ArrowWriter  # pyarrow: only a process that records

        events = turn_events(options.profile)  # a turns column each
        self.writer: ResultsWriter = ArrowWriter(folder, run_id, events=events)
        self.started = time.time()
        self.stopped: float | None = None
        self.abort: str | None = None  # why the run was stopped early
        self.finished = False
        watch = AbortWatch(options.gate.effective(), warmup_s=options.gate.warmup_s)
        self.watch = watch if watch.active else None
        listeners: list[RecordsListener] = list(PROCESS.listeners)
        if self.watch is not None:
            listeners.append(AbortListener(self))
        self.sink = LocalSink(node, environment, self.writer, listeners)
        self.senders: set[str] = set()  # workers that shipped records for this run
        self.finals: set[str] = set()  # workers whose last records arrived
        self.write_meta()

    @property
    def folder(self) -> Path:
        return self.writer.folder

    def stop(self) -> None:
        """The users stopped: the run's stop time, in ``run.json`` at once."""
        if self.stopped is None:
            self.stopped = time.time()
            self.write_meta()

    def wait_for_workers(self, timeout_s: float = FINAL_WAIT_S) -> None:
        """Until every worker that took part shipped its last records (bounded)."""
        deadline = time.monotonic() + timeout_s
        while not self.senders <= self.finals and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def finish(self, out: Callable[[str], None] = print) -> None:
        """Write the last records, close the folder, print the summary, run the gate."""
        if self.finished:
            return
        self.finished = True
        self.stop()
        began = time.perf_counter()
        self.sink.close()
        # The heavy work (compaction, DuckDB, pandas) runs on one of gevent's native
        # threads: the web UI and the workers' heartbeats keep being served meanwhile.
        pool = gevent.get_hub().threadpool
        _import_end_of_run_modules()
        pool.apply(self.writer.close)
        self.write_meta()
        compacted = time.perf_counter()
        _print_summary(self.writer, out, pool)
        summarised = time.perf_counter()
        self._gate(pool)
        log.info(
            "run ended in %.1f s (tables %.1f s, summary %.1f s, gate %.1f s)",
            time.perf_counter() - began,
            compacted - began,
            summarised - compacted,
            time.perf_counter() - summarised,
        )

    def write_meta(self) -> None:
        environment = self.environment
        parsed = vars(environment.parsed_options) if environment.parsed_options else {}
        write_run_json(
            self.folder,
            {
                "run_id": self.run_id,
                "host": environment.host,
                "embedded_target": PROCESS.target is not None,
                "target_args": _applied_target_args(),
                "started": self.started,
                "stopped": self.stopped,
                "mode": type(environment.runner).__name__,
                "options": redact(parsed),
                "profile": self.options.profile.summary(),
                # loud on purpose: numbers from an unverified TLS peer prove nothing about it
                "tls_insecure": self.options.tls.insecure,
                "compression": self.options.compression,
                "versions": versions(),
            },
        )

    def _watch(self, records: Sequence[Record]) -> None:
        """Feed the abort watch; stop the run the moment an abort threshold breaks."""
        watch = self.watch
        if watch is None or not watch.active:
            return
        failures_only = watch.failures_only
        for record in records:
            if (failures_only and record.failure is None) or type(record) is HealthTick:
                continue
            for sample in record.samples():
                failure = sample.failure
                if failures_only and failure is None:
                    continue
                reason = watch.observe(
                    sample.name, failure is None, failure, sample.ms, record.started_at
                )
                if reason is not None:
                    self._abort(reason.message)
                    return

    def _abort(self, message: str) -> None:
        self.abort = message
        print(f"wsload: aborting the run: {message}", file=sys.stderr, flush=True)
        runner = self.environment.runner
        if runner is None:
            return
        if self.environment.web_ui is not None:
            gevent.spawn(runner.stop)  # the web UI keeps serving
        else:
            gevent.spawn(runner.quit)

    def _gate(self, pool: ThreadPool) -> None:
        """The gate over the finished run folder; it sets the exit code (see README)."""
        from wsload.gate.evaluate import evaluate_run  # pandas, once the load has stopped
        from wsload.gate.outputs import publish_gate

        environment = self.environment
        result = pool.apply(evaluate_run, (self.folder, self.options.gate))
        result = publish_gate(result, self.folder, aborted=self.abort)
        runner = environment.runner
        options = environment.parsed_options
        on_error = getattr(options, "exit_code_on_error", 1)
        crashed = bool(runner is not None and runner.exceptions)
        locust_code = on_error if runner is not None and (runner.errors or crashed) else 0
        user_gate = bool(
            getattr(options, "threshold", None) or getattr(options, "thresholds", None)
        )
        code = result.exit_code if user_gate else max(locust_code, result.exit_code)
        if crashed:
            code = max(code, on_error)
        environment.process_exit_code = code


class AbortListener:
    """A run's abort watch as a records listener. When every abort threshold counts
    failures, it says so (``failures_only``), and a master turns only its workers' failed
    rows back into records for it."""

    def __init__(self, run: Run) -> None:
        self.run = run

    @property
    def failures_only(self) -> bool:
        watch = self.run.watch
        return watch is not None and watch.failures_only

    def __call__(self, records: Sequence[Record]) -> None:
        self.run._watch(records)


def _import_end_of_run_modules() -> None:
    """Import on the hub what the native thread will use: an import there would take
    Python's import locks, which gevent's monkey-patching turned into greenlet locks."""
    for name in END_OF_RUN_MODULES:
        importlib.import_module(name)


def _applied_target_args() -> str | None:
    """The embedded target's knobs as it was started with them, secrets masked."""
    if PROCESS.target is None:
        return None
    return redact_text(shlex.join(PROCESS.target_args))


def _print_summary(writer: ResultsWriter, out: Callable[[str], None], pool: ThreadPool) -> None:
    from wsload.run.summary import render  # imported here: not on a native thread

    try:
        out(pool.apply(render, (writer.folder,)))
        out(f"results: {writer.folder} (wsload export {writer.folder} --csv for a CSV)")
    except (OSError, ValueError, KeyError) as exc:  # an empty run has nothing to summarise
        out(f"wsload: no summary ({exc})")
    except Exception:  # a bug in the summary must not take the gate and its exit code along
        log.exception("the end-of-run summary failed")
