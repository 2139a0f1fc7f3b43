"""Locust's events, wsload's answers: options, the embedded target, runs and their ends.

Importing it registers wsload's command-line options and the listeners that validate them
before any user starts, start the reference target when no ``--host`` is given, begin a
run (its own folder) at each test start, record Locust's own HTTP requests, ship or write
the records, and end each run with its summary and gate: at test stop when the process
keeps serving (the web UI), else when Locust quits, after a master has every worker's
last records.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any

import gevent
import psutil
from locust import events
from locust.env import Environment
from locust.exception import RPCError
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from wsload.config.idp_tokens import check_token_source, run_minter
from wsload.config.options import RunOptions, from_namespace, websocket_url
from wsload.config.profile_warnings import profile_warnings
from wsload.errors import EXIT_CONFIG_ERROR, ConfigError
from wsload.gate.names import check_gate_names
from wsload.heap import tune_collector
from wsload.locust.arguments import add_options
from wsload.locust.budget_check import check_local_budgets, raise_limits
from wsload.locust.health import sample_health
from wsload.locust.metrics import start_metrics
from wsload.locust.process import PROCESS
from wsload.locust.recording import RECORDS_MESSAGE, WorkerSink, request_is_wsloads
from wsload.locust.runs import FINAL_WAIT_S, Run
from wsload.locust.runtime import node_of, recording_for
from wsload.locust.spawn_messages import cache_default_args
from wsload.locust.target import start_embedded_target, stop_embedded_target
from wsload.net.raw_exchange import preflight
from wsload.net.transport_check import check_framing
from wsload.run.meta import TLS_INSECURE_NOTICE
from wsload.run.recorder import prepare_run_folder
from wsload.run.records import HttpRequest, Who

log = logging.getLogger("wsload")
cache_default_args()  # a worker parses each spawn message in microseconds, not seconds


class _Lifecycle:
    """What the listeners keep between events, beyond ``PROCESS``."""

    health: gevent.Greenlet | None = None
    worker_sink: WorkerSink | None = None
    said: set[str] = set()  # warnings of the checks before load, said once per process


_now = _Lifecycle()


def run_folder() -> Any:
    """The folder of the run being recorded on this process (None on a worker, or between
    runs)."""
    run = PROCESS.run
    return run.folder if run is not None and not run.finished else None


def keeps_serving(environment: Environment) -> bool:
    """Whether the process outlives the run (the web UI): then each run ends at its stop."""
    return environment.web_ui is not None


def _fail_config(error: ConfigError) -> None:
    print(f"wsload: error: {error}", file=sys.stderr, flush=True)
    stop_embedded_target()
    stop_forked_workers()
    sys.exit(EXIT_CONFIG_ERROR)


def stop_forked_workers() -> None:
    """End the workers ``--processes`` forked from this process: a master that stops
    before the run would otherwise leave them waiting a minute for its heartbeat."""
    me = psutil.Process()
    command = me.cmdline()
    for child in me.children():
        with contextlib.suppress(psutil.Error):
            if child.cmdline() == command:
                child.terminate()


def check_options(environment: Environment, options: RunOptions) -> None:
    """Everything a run needs that can be checked before any user starts."""
    run_minter(options)
    check_gate_names(options.gate, options.profile)
    websocket_url(environment.host, options.profile)
    run_time = getattr(environment.parsed_options, "run_time", None)
    for warning in check_token_source(options, run_time):
        if warning not in _now.said:
            _now.said.add(warning)
            log.warning("%s", warning)


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    add_options(parser)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    PROCESS.environment = environment
    recording_for(environment)
    # pyarrow (the results tables) loads now, not when the first run starts: an import of
    # a second on a busy machine must not come out of the run's time.
    import wsload.run.wire
    import wsload.run.writer  # noqa: F401

    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(RECORDS_MESSAGE, _on_records_from_worker)
    raise_limits()  # every generator process: soft open-file limit up to the hard one
    if isinstance(runner, WorkerRunner):
        try:
            start_metrics(environment)  # --otel export; /metrics figures once the master asks
        except ConfigError as error:
            _fail_config(error)
        return  # workers take host and options from the master's spawn messages
    try:
        options = from_namespace(environment.parsed_options)
        if not environment.host:
            start_embedded_target(environment, options)
            options = from_namespace(environment.parsed_options)  # now with the secret
        start_metrics(environment)  # after the target's fork; a busy --metrics-port fails here
        check_options(environment, options)
        preflight(websocket_url(environment.host, options.profile), tls_settings=options.tls)
        check_framing(websocket_url(environment.host, options.profile), options.profile)
        check_local_budgets(environment, options)
        if options.results:
            prepare_run_folder(options.results, "check")
        _size_probe_users(environment, options.probe_users)
    except ConfigError as error:
        _fail_config(error)
    for warning in profile_warnings(options.profile):  # e.g. isolation checks that cannot run
        log.warning("%s", warning)
    if options.tls.insecure:
        log.warning("WARNING: %s", TLS_INSECURE_NOTICE)
    from wsload.locust.live import LiveStats
    from wsload.locust.webui import install, install_report

    # Standalone or master: the live numbers, for the web UI and Locust's HTML report; a
    # headless run with neither does not pay for them.
    html = getattr(environment.parsed_options, "html_file", None)
    if environment.web_ui is not None or html:
        PROCESS.live = LiveStats()
        PROCESS.listeners.append(PROCESS.live.add_records)
        install_report(PROCESS.live)
    if environment.web_ui is not None:
        install(environment, PROCESS.live, check_options)


def _size_probe_users(environment: Environment, count: int) -> None:
    """Give the probe user class its fixed count, or drop it when probes are off."""
    for user_class in list(environment.user_classes):
        if user_class.__name__ == "SecurityProbeUser":
            if count > 0:
                user_class.fixed_count = count
            else:
                environment.user_classes.remove(user_class)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    recording = recording_for(environment)
    node = node_of(environment)
    if isinstance(runner, MasterRunner) and environment.parsed_options is not None:
        environment.parsed_options.wsload_workers = runner.worker_count  # for login slots
    if isinstance(runner, WorkerRunner):
        _now.worker_sink = WorkerSink(node, environment, PROCESS.listeners)
        recording.sink = _now.worker_sink
    else:
        if not _begin_run(environment, node):
            return
    _now.health = gevent.spawn(sample_health, environment, recording.observe)
    tune_collector()  # the load starts: what is alive now stays alive


def _begin_run(environment: Environment, node: str) -> bool:
    """A new run with its own folder; False (and the load stopped) if it cannot start."""
    previous = PROCESS.run
    if previous is not None and not previous.finished:
        previous.finish()
    try:
        options = from_namespace(environment.parsed_options)
        run = Run(environment, options, node)
    except ConfigError as error:
        if not keeps_serving(environment):
            _fail_config(error)
        print(f"wsload: error: {error}", file=sys.stderr, flush=True)
        if environment.runner is not None:
            gevent.spawn(environment.runner.stop)
        return False
    PROCESS.runs += 1
    PROCESS.run = run
    if PROCESS.live is not None:
        PROCESS.live.reset()
    recording_for(environment).sink = run.sink
    log.info("recording raw samples in %s", run.folder)
    return True


@events.request.add_listener
def _on_request(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    exception: BaseException | None = None,
    context: dict[str, Any] | None = None,
    start_time: float | None = None,
    response: Any = None,
    **_: Any,
) -> None:
    """A request of Locust's own HTTP clients: to the results (Locust counts it itself)."""
    recording = PROCESS.recording
    if recording is None or recording.sink is None or request_is_wsloads(context):
        return
    user, subject, session = (context or {}).get("wsload_user", (0, "", ""))
    status = getattr(response, "status_code", None) or None
    failure = None
    detail = ""
    if exception is not None:
        failure = f"http_{status}" if status else type(exception).__name__
        detail = str(exception)[:200]
    recording.observe(
        HttpRequest(
            start_time if start_time is not None else 0.0,
            Who(user, subject, session),
            name,
            response_time,
            failure,
            detail,
            status,
            response_length or 0,
        )
    )


def _on_records_from_worker(msg: Any, **_: Any) -> None:
    run = PROCESS.run
    if run is None or run.finished:
        return  # a late message of a run already ended
    from wsload.run.wire import decode  # pyarrow, imported by the first run's writer

    batches = decode(msg.data)
    run.senders.add(msg.node_id)
    if msg.data.get("final"):
        run.finals.add(msg.node_id)
    run.sink.add_shipped(batches)


def _drain_last_records(runner: MasterRunner, run: Run) -> None:
    """Read the workers' last records off the socket until each has sent its final batch.

    A headless master quits by telling its workers to quit, giving them half a second and
    then stopping its listener; a busy worker's final batch comes later and was lost. The
    listener is gone by now, so nothing else reads the socket (bounded by FINAL_WAIT_S).
    """
    deadline = time.monotonic() + FINAL_WAIT_S
    while not run.senders <= run.finals:
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("wsload: workers %s sent no final records", run.senders - run.finals)
            return
        try:
            with gevent.Timeout(left):
                _, msg = runner.server.recv_from_client()
        except gevent.Timeout:
            continue  # the deadline: said above
        except RPCError:
            return  # the socket is gone: nothing more will come
        if msg.type == RECORDS_MESSAGE:
            _on_records_from_worker(msg)


@events.report_to_master.add_listener
@events.spawning_complete.add_listener
def _flush_stats(**_: Any) -> None:
    """Pending samples into Locust's stats before anything reads them.

    Registered at import, so before Locust's own listeners: a worker's stats report
    includes them.
    """
    if PROCESS.recording is not None:
        PROCESS.recording.flush()


@events.reset_stats.add_listener
def _on_reset_stats(**_: Any) -> None:
    """Locust's stats start over (web UI, ``--reset-stats``): pending samples go with them,
    and a running run starts over too, in a folder of its own, so the results and Locust's
    numbers keep covering the same samples."""
    _flush_stats()
    environment = PROCESS.environment
    if PROCESS.live is not None:
        PROCESS.live.reset()
    run = PROCESS.run
    if environment is None or run is None or run.finished:
        return
    runner = environment.runner
    if runner is not None and runner.state in (STATE_RUNNING, STATE_SPAWNING):
        run.finish()
        _begin_run(environment, node_of(environment))


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    _flush_stats()  # users are stopped: the last of their samples
    if _now.health is not None:
        _now.health.kill(block=False)
        _now.health = None
    if _now.worker_sink is not None:
        _now.worker_sink.close()  # its last records, before its final stats report
        _now.worker_sink = None
        if PROCESS.recording is not None:
            PROCESS.recording.sink = None
        return
    run = PROCESS.run
    if run is None or run.finished:
        return
    run.stop()
    if not keeps_serving(environment):
        if not isinstance(environment.runner, MasterRunner):
            run.sink.flush()  # every record in the live numbers before Locust's --html report
        return  # ended when Locust quits: a master still receives workers' last records
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        if runner.user_count > 0:
            return  # quitting without stopping the workers: ended when Locust quits
        run.wait_for_workers()
    _end_run(run)


def _end_run(run: Run) -> None:
    if PROCESS.recording is not None and PROCESS.recording.sink is run.sink:
        PROCESS.recording.sink = None
    run.finish()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    run = PROCESS.run
    if run is not None and not run.finished:
        if isinstance(environment.runner, MasterRunner):
            _drain_last_records(environment.runner, run)
        _end_run(run)
    stop_embedded_target()
