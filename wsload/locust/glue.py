"""The one engine module that imports Locust: options, the embedded target, raw samples.

Importing it registers wsload's command-line options (also settable by environment and
``locust.conf``, shown in the web UI, secrets kept off it) and the event listeners that
validate them before any user starts, start the reference target when no ``--host`` is
given, record every request event as a raw row, and print the exact summary at the end.

Every Locust request event, wsload's own and any other (a login through Locust's HTTP
client, say), becomes one raw row, so the rows per name equal Locust's counts by
construction. A standalone process writes its rows itself; a worker ships them to the
master in batches over Locust's messages, once a second and when it stops; the master
writes the one run folder.
"""

from __future__ import annotations

import atexit
import gc
import itertools
import logging
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import psutil
from locust import events
from locust import stats as locust_stats
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from wsload.config.options import OPTION_SPECS, RunOptions, from_namespace, http_base, websocket_url
from wsload.config.profile import JsonTemplate
from wsload.config.tokens import Credential, TokenMinter, node_tag, subject_for
from wsload.errors import EXIT_CONFIG_ERROR, ConfigError
from wsload.gate import AbortWatch
from wsload.gate.names import check_gate_names
from wsload.locust.live import LiveStats
from wsload.net.client import ClientOptions, preflight
from wsload.net.probes import ProbeTokens
from wsload.protocol.tracker import TurnResult
from wsload.run.recorder import (
    Recorder,
    expand,
    new_run_id,
    parse_label,
    prepare_run_folder,
    redact,
    turn_label,
    versions,
    write_run_json,
)
from wsload.run.records import ProbeRecord, Record, TurnRecord

log = logging.getLogger("wsload")
REQUEST_TYPE = "WS"
ROWS_MESSAGE = "wsload_rows"
SHIP_INTERVAL_S = 1.0
HEALTH_INTERVAL_S = 1.0


class Failure(Exception):
    """A failed sample; its repr is the taxonomy id so Locust groups failures by it."""

    def __init__(self, failure: str, detail: str = "") -> None:
        super().__init__(failure)
        self.failure = failure
        self.detail = detail

    def __repr__(self) -> str:
        return self.failure

    __str__ = __repr__


class Runtime:
    """Per-process state shared by all users of one test run."""

    def __init__(self, environment: Environment, options: RunOptions) -> None:
        self.environment = environment
        self.options = options
        self.profile = options.profile
        self.grammar = options.profile.grammar
        self.minter = TokenMinter(
            options.profile.token,
            secret=options.jwt_secret,
            key_file=options.jwt_private_key,
            lifetime_s=options.token_lifetime_s,
        )
        if not environment.host:
            raise ConfigError("no --host to load", fix="pass --host ws://HOST:PORT")
        self.url = websocket_url(environment.host, options.profile)
        self.http_url = http_base(self.url)
        self.node = _node(environment)
        self.client_options = ClientOptions(
            connect_timeout_s=options.connect_timeout_s,
            handshake_timeout_s=options.connect_timeout_s,
            ack_timeout_s=options.ack_timeout_s,
        )
        self._user_index = itertools.count(1)
        self._turn_index = itertools.count(1)
        self._fire = environment.events.request.fire
        self._request_handlers = getattr(environment.events.request, "_handlers", (0, 0, 0))
        self._stats = environment.stats
        self.turn_stats = TurnStats(environment.stats)
        self._flusher = gevent.spawn(self.turn_stats.flush_forever)
        self._probe_tokens: ProbeTokens | None = None
        self._sample_names: dict[tuple[str, str], tuple[str, str]] = {}
        self._chat_template = JsonTemplate(options.profile.chat.message, ("content", "thread_id"))
        events = options.profile.events
        heartbeat = options.profile.heartbeat
        self.known_events = frozenset(
            {*self.grammar.names, *events.optional, *events.error, *events.ignore}
            | {heartbeat.pong_type, heartbeat.server_heartbeat_type}
        )
        self.inflight_handshakes = 0  # in this process, for the inflight column
        self.inflight_turns = 0

    def close(self) -> None:
        """Log what is pending into Locust's stats; no more timed flushes."""
        self._flusher.kill(block=False)
        self.turn_stats.flush()

    def chat_payload(self, content: str, thread_id: str) -> str:
        """The chat message as sent, from the profile's template."""
        return self._chat_template.render(content=content, thread_id=thread_id)

    def probe_tokens(self) -> ProbeTokens:
        """The crafter of defective credentials, made once (it may generate a key)."""
        if self._probe_tokens is None:
            self._probe_tokens = ProbeTokens(self.minter)
        return self._probe_tokens

    def credential_for(self, index: int) -> Credential | None:
        """The login of user ``index``, spread over all workers; None past the profile's cap.

        A credential serves at most ``limits.connections_per_user`` users at once, so one
        subject never holds more sessions than the backend allows.
        """
        creds = self.options.credentials
        parsed = self.environment.parsed_options
        workers = max(1, int(getattr(parsed, "wsload_workers", 1) or 1))
        runner = self.environment.runner
        worker = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        slot = (index - 1) * workers + worker
        if not creds or slot >= len(creds) * self.profile.limits.connections_per_user:
            return None
        return creds[slot % len(creds)]

    def new_user(self) -> tuple[int, str]:
        """Index and subject of a new user, unique across generator processes."""
        index = next(self._user_index)
        return index, subject_for(self.profile.token.subject_prefix, self.node, index)

    def new_turn(self) -> int:
        return next(self._turn_index)

    def _record_sample(
        self,
        kind: str,
        name: str,
        ms: float,
        *,
        ok: bool = True,
        failure: str | None = None,
        detail: str = "",
        started_at: float | None = None,
        user: int = 0,
        subject: str = "",
        session: str = "",
        turn: int = 0,
        http_status: int | None = None,
        close_code: int | None = None,
        length: int = 0,
        events_count: int | None = None,
        inflight: int | None = None,
    ) -> None:
        """One sample: into Locust's stats and, as a raw row, into the run folder.

        When nothing but Locust's runner and wsload listen to request events, the sample
        goes straight to ``environment.stats`` exactly as Locust's own listener would put
        it (and to the raw rows); with any other listener (a plugin, ``--otel``) it is
        fired as a request event like any Locust request.
        """
        exception = None if ok else Failure(failure or "failed", detail)
        if len(self._request_handlers) > 2:
            self._fire(
                request_type=REQUEST_TYPE,
                name=name,
                response_time=ms,
                response_length=length,
                exception=exception,
                context={
                    "wsload": (
                        kind,
                        started_at,
                        user,
                        subject,
                        session,
                        turn,
                        failure,
                        detail,
                        http_status,
                        close_code,
                        events_count,
                        inflight,
                    )
                },
            )
            return
        stats = self._stats
        self.turn_stats.settle(int(time.time()))  # earlier seconds first, as Locust counts
        stats.log_request(REQUEST_TYPE, name, ms, length)
        if exception is not None:
            stats.log_error(REQUEST_TYPE, name, exception)
        sink = _state.sink
        if sink is not None:
            sink.add(
                _row(
                    self.node,
                    started_at,
                    user,
                    subject,
                    session,
                    turn,
                    kind,
                    name,
                    ms,
                    ok,
                    failure,
                    http_status,
                    close_code,
                    self.user_count(),
                    length,
                    events_count,
                    detail,
                    inflight,
                )
            )

    def user_count(self) -> int:
        runner = self.environment.runner
        return runner.user_count if runner is not None else 0

    def record(self, record: Record) -> None:
        """The one seam every measurement leaves through: a typed record
        (``wsload.run.records``), logged into Locust's stats and written to the results."""
        if type(record) is TurnRecord:
            who = record.who
            self._record_turn(
                record.result,
                record.started_at,
                record.turn,
                record.inflight,
                record.sent_bytes,
                who.user,
                who.subject,
                who.session,
                intended_ms=record.intended_ms,
            )
            return
        who = record.who
        inflight = getattr(record, "inflight", None)
        answered = type(record) is ProbeRecord  # how a probe was refused is its result
        for sample in record.samples():
            failed = sample.failure is not None
            said = failed or answered
            self._record_sample(
                sample.kind,
                sample.name,
                sample.ms,
                ok=not failed,
                failure=sample.failure,
                detail=sample.detail,
                started_at=record.started_at,
                user=who.user,
                subject=who.subject,
                session=who.session,
                http_status=getattr(record, "http_status", None) if said else None,
                close_code=getattr(record, "close_code", None) if said else None,
                inflight=inflight,
            )

    def _record_turn(
        self,
        result: TurnResult,
        started_at: float,
        turn: int,
        inflight: int,
        sent_bytes: int,
        user: int,
        subject: str,
        session: str,
        intended_ms: float | None = None,
    ) -> None:
        """Every sample of one turn, in one go: this runs for every turn of every user.

        The same samples as ``record`` would make (``turn:ttfe``, ``turn:<event>``,
        ``turn:gap``, ``turn:<span>``, ``turn:e2e``), logged into Locust's stats in one
        pass and handed to the sink as one turn block (see ``wsload.run.recorder``): a call
        with a dozen keyword arguments per sample costs more than the stats themselves.
        """
        labels, values, by_name = self._turn_samples(result, intended_ms)
        ok = result.ok
        e2e = result.e2e_ms if ok and result.e2e_ms is not None else result.elapsed_ms
        detail = "; ".join(d for _, d in result.failures)[:300]
        if len(self._request_handlers) > 2:  # someone else listens: fire real events
            common = dict(started_at=started_at, turn=turn, user=user, subject=subject)
            for label, ms in zip(labels, values, strict=True):
                kind, name = parse_label(label)
                self._record_sample(kind, name, ms, session=session, **common)
            self._record_sample(
                "turn", "turn:e2e", e2e, ok=ok, failure=result.failure, detail=detail,
                events_count=result.events, inflight=inflight, length=sent_bytes,
                session=session, **common,
            )  # fmt: skip
            return
        by_name.setdefault("turn:e2e", []).append(e2e)
        self.turn_stats.add(
            by_name,
            {"turn:e2e": sent_bytes},
            None if ok else ("turn:e2e", Failure(result.failure or "failed")),
        )
        sink = _state.sink
        if sink is not None:
            end = (e2e, 1 if ok else 0, result.failure or "", sent_bytes, result.events, detail,
                   inflight)  # fmt: skip
            sink.add(
                (self.node, round(started_at, 6), user, subject, session, turn,
                 self.user_count(), tuple(labels), values, end)
            )  # fmt: skip

    def _turn_samples(
        self, result: TurnResult, intended_ms: float | None
    ) -> tuple[list[str], list[float], dict[str, list[float]]]:
        """A turn's samples but ``turn:e2e``: turn-block labels, values, values per name."""
        labels: list[str] = []
        values: list[float] = []
        by_name: dict[str, list[float]] = {}
        stat_of = self._sample_names
        if result.ttfe_ms is not None:
            labels.append("event,turn:ttfe")
            values.append(result.ttfe_ms)
            by_name["turn:ttfe"] = [result.ttfe_ms]
        for name, ms in result.first_ms.items():
            stat, label = stat_of.get(("event", name)) or self._turn_stat("event", name)
            labels.append(label)
            values.append(ms)
            by_name.setdefault(stat, []).append(ms)
        gaps = result.gaps_ms
        if gaps:
            labels.extend(["gap,turn:gap"] * len(gaps))
            values.extend(gaps)
            by_name.setdefault("turn:gap", []).extend(gaps)
        for span, ms in result.spans_ms:
            stat, label = stat_of.get(("span", span)) or self._turn_stat("span", span)
            labels.append(label)
            values.append(ms)
            by_name.setdefault(stat, []).append(ms)
        if intended_ms is not None:
            labels.append("intended,turn:e2e_intended")
            values.append(intended_ms)
            by_name.setdefault("turn:e2e_intended", []).append(intended_ms)
        return labels, values, by_name

    def _turn_stat(self, kind: str, name: str) -> tuple[str, str]:
        """Stats name and turn-block label of an event's or span's sample, made once."""
        stat = f"turn:{name}"
        label = turn_label(kind, stat)
        self._sample_names[(kind, name)] = (stat, label)
        return stat, label


def log_samples(
    stats: Any,
    method: str,
    by_name: dict[str, list[float]],
    lengths: dict[str, int],
    now: float | None = None,
) -> None:
    """Log samples into Locust's stats exactly as ``log_request`` would, one per value.

    ``StatsEntry.log`` reads the clock and makes half a dozen calls per sample, for the
    entry and again for the total; a turn is a dozen samples taken at once, so this reads
    the clock once and updates each entry, and the total, in one pass.
    ``tests/test_locust_contract.py`` holds it to Locust's own ``log_request``. ``now``
    is when the samples were taken (default: now).
    """
    if now is None:
        now = time.time()
    second = int(now)
    bucket = locust_stats.bucket_response_time  # looked up each time: Locust lets users swap it
    entries = stats.entries
    everything: list[float] = []
    total_buckets: Counter[int] = Counter()
    length_total = 0
    for name, values in by_name.items():
        length = lengths.get(name, 0)
        buckets = Counter(map(bucket, values))  # each value bucketed once, for both entries
        _log_values(entries[(name, method)], values, buckets, length, now, second)
        everything.extend(values)
        total_buckets.update(buckets)
        length_total += length
    _log_values(stats.total, everything, total_buckets, length_total, now, second)


def _log_values(
    entry: Any,
    values: list[float],
    buckets: Counter[int],
    length: int,
    now: float,
    second: int,
) -> None:
    if (
        entry.use_response_times_cache
        and entry.last_request_timestamp
        and second > int(entry.last_request_timestamp)
    ):
        entry._cache_response_times(second - 1)
    count = len(values)
    entry.num_requests += count
    entry.num_reqs_per_sec[second] += count
    entry.last_request_timestamp = now
    entry.total_response_time += sum(values)
    low, high = min(values), max(values)
    if entry.min_response_time is None or low < entry.min_response_time:
        entry.min_response_time = low
    if high > entry.max_response_time:
        entry.max_response_time = high
    times = entry.response_times
    for rounded, times_seen in buckets.items():
        times[rounded] += times_seen
    entry.total_content_length += length


def log_errors(stats: Any, method: str, errors: list[tuple[str, Any]], now: float) -> None:
    """``stats.log_error`` for each (name, error), counted in the second of ``now``.

    Locust's own reads the clock; a batch logged later must count in its own second.
    """
    second = int(now)
    for name, error in errors:
        for entry in (stats.total, stats.entries[(name, method)]):
            entry.num_failures += 1
            entry.num_fail_per_sec[second] += 1
        key = locust_stats.StatsError.create_key(method, name, error)
        found = stats.errors.get(key)
        if found is None:
            found = stats.errors[key] = locust_stats.StatsError(method, name, error)
        found.occurred()


class TurnStats:
    """Turn samples for Locust's stats, logged a batch at a time.

    Logged per turn, Locust's per-entry bookkeeping (clock, cache, min, max, and all of it
    again for the total) runs a dozen times per turn. Batched, it runs once per entry per
    batch, and every sample still lands in the clock second it was taken in: a batch never
    spans two seconds. Flushed when the second changes, by ``flush_forever`` at least every
    quarter second, before a worker's stats report, before another sample is logged in a
    later second, and when the test stops, so nothing that reads Locust's stats sees it
    late by more than that quarter second.
    """

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.values: dict[str, list[float]] = {}
        self.lengths: dict[str, int] = {}
        self.errors: list[tuple[str, Exception]] = []
        self.second = 0
        self.at = 0.0

    def add(
        self,
        by_name: dict[str, list[float]],
        lengths: dict[str, int],
        error: tuple[str, Exception] | None = None,
    ) -> None:
        """Samples taken now; the lists are kept (callers hand over fresh ones)."""
        now = time.time()
        self.settle(int(now))
        self.at = now
        values = self.values
        for name, taken in by_name.items():
            pending = values.get(name)
            if pending is None:
                values[name] = taken
            else:
                pending.extend(taken)
        for name, length in lengths.items():
            self.lengths[name] = self.lengths.get(name, 0) + length
        if error is not None:
            self.errors.append(error)

    def settle(self, second: int) -> None:
        """Log what was taken in an earlier second than ``second``."""
        if second != self.second:
            self.flush()
            self.second = second

    def flush(self) -> None:
        if not self.values:
            return
        values, self.values = self.values, {}
        lengths, self.lengths = self.lengths, {}
        errors, self.errors = self.errors, []
        log_samples(self.stats, REQUEST_TYPE, values, lengths, now=self.at)
        if errors:
            log_errors(self.stats, REQUEST_TYPE, errors, now=self.at)

    def flush_forever(self, interval_s: float = 0.25) -> None:
        while True:
            gevent.sleep(interval_s)
            self.flush()


def _row(
    node: str,
    started: float | None,
    user: int,
    subject: str,
    session: str,
    turn: int | None,
    kind: str,
    name: str,
    ms: float,
    ok: bool,
    failure: str | None,
    status: int | None,
    code: int | None,
    users: int,
    length: int | None,
    events_count: int | None,
    detail: str,
    inflight: int | None,
) -> tuple[Any, ...]:
    """One raw row in ``ROW_FIELDS`` order (the recorder adds the version and run id)."""
    return (
        node,
        round(started if started is not None else time.time(), 6),
        user,
        subject,
        session,
        turn or "",
        kind,
        name,
        round(ms, 3),
        1 if ok else 0,
        failure or "",
        status or "",
        code or "",
        users,
        length or 0,
        "" if events_count is None else events_count,
        detail,
        "" if inflight is None else inflight,
    )


def _node(environment: Environment) -> str:
    runner = environment.runner
    return node_tag(runner.worker_index if isinstance(runner, WorkerRunner) else None)


# Where rows go -----------------------------------------------------------------------------
class _Sink:
    """Takes ``ROW_FIELDS`` rows and turn blocks (``wsload.run.recorder``) from this process."""

    batch: list[tuple[Any, ...]]

    def add(self, row: tuple[Any, ...]) -> None:
        self.batch.append(row)

    def close(self) -> None:
        """Deliver what is pending."""


class _LocalSink(_Sink):
    """Writes buffered rows once a second, formatting them on a native thread.

    At full load a second of rows is tens of thousands of lines. Written on the event loop
    in one go they would stall every user for tens of milliseconds; written in slices
    between the users' turns, the writer starves when the generator is saturated. On one of
    gevent's native threads it gets its share of the interpreter in 5 ms turns and the
    users keep running. It is stopped by an event and waited for, never killed, so no row
    it holds is lost.
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.batch: list[tuple[Any, ...]] = []
        self._stop = gevent.event.Event()
        self._pool = gevent.get_hub().threadpool
        self._writer = gevent.spawn(self._write_forever)

    def _write(self) -> None:
        if self.batch:
            batch, self.batch = self.batch, []
            self._pool.apply(self.recorder.add_many, (batch,))
            _tell_listeners(batch)
        self.recorder.flush()

    def _write_forever(self) -> None:
        while not self._stop.wait(SHIP_INTERVAL_S):
            self._write()

    def close(self) -> None:
        self._stop.set()
        self._writer.join()
        self._write()


class _WorkerSink(_Sink):
    """Batches rows and ships them to the master once a second and when the test stops."""

    def __init__(self, runner: WorkerRunner) -> None:
        self.runner = runner
        self.batch: list[tuple[Any, ...]] = []
        self._shipper = gevent.spawn(self._ship_forever)

    def _ship(self) -> None:
        if self.batch:
            batch, self.batch = self.batch, []
            self.runner.send_message(ROWS_MESSAGE, batch)

    def _ship_forever(self) -> None:
        while True:
            gevent.sleep(SHIP_INTERVAL_S)
            self._ship()

    def close(self) -> None:
        self._shipper.kill(block=False)
        self._ship()


class _State:
    runtime: Runtime | None = None
    runtime_key: tuple[Any, ...] | None = None
    target: Any = None
    recorder: Recorder | None = None
    sink: _Sink | None = None
    health: gevent.Greenlet | None = None
    run_started: float | None = None
    runs: int = 0
    environment: Environment | None = None
    gate: Any = None  # GateConfig of the current run
    watch: AbortWatch | None = None
    abort: str | None = None
    row_listeners: list[Callable[[Sequence[tuple[Any, ...]]], None]] = []
    live: LiveStats | None = None  # the web UI tabs' numbers


_state = _State()


def run_folder() -> Path | None:
    """The folder of the run being recorded on this process (None on a worker, or between
    runs)."""
    recorder = _state.recorder
    return recorder.folder if recorder is not None else None


def _fail_config(error: ConfigError) -> None:
    print(f"wsload: error: {error}", file=sys.stderr, flush=True)
    _stop_target()
    sys.exit(EXIT_CONFIG_ERROR)


def _stop_target() -> None:
    if _state.target is not None:
        _state.target.stop()
        _state.target = None


def runtime_for(environment: Environment) -> Runtime:
    """The process's runtime, rebuilt when the options or host changed (web UI, master)."""
    options = environment.parsed_options
    key = (environment.host, *(getattr(options, s.dest, None) for s in OPTION_SPECS))
    if _state.runtime is None or _state.runtime_key != key:
        if _state.runtime is not None:
            _state.runtime.close()
        _state.runtime = Runtime(environment, from_namespace(options))
        _state.runtime_key = key
    return _state.runtime


# Listeners ---------------------------------------------------------------------------------
@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    for spec in OPTION_SPECS:
        kwargs: dict[str, Any] = {
            "default": spec.default,
            "env_var": spec.env,
            "help": f"{spec.help} [env {spec.env}]",
            # Locust writes a UI argument's value into the page source even when it masks
            # the input, so secrets stay off the web UI: they come from env or locust.conf.
            # Repeatable options stay off too: the UI edits one value per option.
            "include_in_web_ui": not spec.secret and spec.action != "append",
        }
        if spec.action:
            kwargs["action"] = spec.action
        else:
            kwargs["type"] = spec.type
        if spec.choices:
            kwargs["choices"] = spec.choices
        parser.add_argument(spec.flag, **kwargs)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    _state.environment = environment
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(ROWS_MESSAGE, _on_rows_from_worker)
    if isinstance(runner, WorkerRunner):
        return  # workers take host and options from the master's spawn messages
    try:
        options = from_namespace(environment.parsed_options)
        if not environment.host:
            _start_embedded_target(environment, options)
            options = from_namespace(environment.parsed_options)  # now with the secret
        TokenMinter(
            options.profile.token,
            secret=options.jwt_secret,
            key_file=options.jwt_private_key,
            lifetime_s=options.token_lifetime_s,
        )
        check_gate_names(options.gate, options.profile)
        url = websocket_url(environment.host, options.profile)
        preflight(url)
        if options.results:
            prepare_run_folder(options.results, "check")
        _size_probe_users(environment, options.probe_users)
    except ConfigError as error:
        _fail_config(error)
    if environment.web_ui is not None:  # standalone or master: the live tabs
        from wsload.locust.webui import install

        _state.live = LiveStats()
        install(environment, _state.live)
        add_row_listener(_state.live.add_rows)


def _size_probe_users(environment: Environment, count: int) -> None:
    """Give the probe user class its fixed count, or drop it when probes are off."""
    for user_class in list(environment.user_classes):
        if user_class.__name__ == "SecurityProbeUser":
            if count > 0:
                user_class.fixed_count = count
            else:
                environment.user_classes.remove(user_class)


def _start_embedded_target(environment: Environment, options: RunOptions) -> None:
    from wsload.target import start_target

    secret = options.jwt_secret or secrets.token_urlsafe(32)
    if environment.parsed_options is not None:
        environment.parsed_options.jwt_secret = secret  # shipped to workers with the options
    try:
        _state.target = start_target(list(options.target_args), secret=secret)
    except RuntimeError as exc:
        raise ConfigError(
            f"the embedded reference target did not start: {exc}",
            fix="check --target-args (run `wsload target --help` for the knobs)",
        ) from None
    atexit.register(_stop_target)
    environment.host = _state.target.url
    if environment.parsed_options is not None:
        environment.parsed_options.host = _state.target.url
    log.info("no --host given: started the reference target at %s", _state.target.url)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner) and environment.parsed_options is not None:
        environment.parsed_options.wsload_workers = runner.worker_count  # for login slots
    if isinstance(runner, WorkerRunner):
        _state.sink = _WorkerSink(runner)
    else:
        try:
            options = from_namespace(environment.parsed_options)
            run_id = new_run_id()
            base = options.results or None
            if base and _state.runs:
                base = f"{base}-{_state.runs + 1}"  # a second run from the web UI
            folder = prepare_run_folder(base, run_id)
        except ConfigError as error:
            _fail_config(error)
            return
        _state.runs += 1
        _state.gate = options.gate
        _state.abort = None
        watch = AbortWatch(options.gate.effective(), warmup_s=options.gate.warmup_s)
        _state.watch = watch if watch.active else None
        if _state.live is not None:
            _state.live.reset()
        _state.recorder = Recorder(folder, run_id)
        _state.sink = _LocalSink(_state.recorder)
        _state.run_started = time.time()
        _write_meta(environment, options, stopped=None)
        log.info("recording raw samples in %s", folder)
    _state.health = gevent.spawn(_sample_health, environment, _state.sink)
    _tune_gc()


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
    sink = _state.sink
    if sink is None:
        return
    runner = _state.runtime.environment.runner if _state.runtime else None
    users = runner.user_count if runner is not None else 0
    extras = context.get("wsload") if context else None
    if extras is not None:
        kind, started, user, subject, session, turn, failure, detail, status, code, n, inflight = (
            extras
        )
    else:  # a request of Locust's own clients: time it like any other sample
        user, subject, session = (context or {}).get("wsload_user", (0, "", ""))
        kind, turn, code, n, inflight = "http", 0, None, None, None
        started = start_time
        status = getattr(response, "status_code", None) or None
        failure = None
        detail = ""
        if exception is not None:
            failure = f"http_{status}" if status else type(exception).__name__
            detail = str(exception)[:200]
    sink.add(
        _row(
            _state.runtime.node if _state.runtime else "",
            started,
            user,
            subject,
            session,
            turn,
            kind,
            name,
            response_time,
            exception is None,
            failure,
            status,
            code,
            users,
            response_length,
            n,
            detail,
            inflight,
        )
    )


def _on_rows_from_worker(msg: Any, **_: Any) -> None:
    if _state.recorder is not None:
        _state.recorder.add_many(msg.data)
        _tell_listeners(msg.data)


def _tell_listeners(batch: Sequence[Sequence[Any]]) -> None:
    """Hand a written batch to the row listeners, turn blocks expanded into their rows."""
    watch = _state.watch
    if _state.row_listeners:
        rows = expand(batch)
        for listener in _state.row_listeners:
            listener(rows)
        if watch is not None:
            _watch_rows(rows)
    elif watch is not None:
        _watch_rows(expand(batch, failed_only=watch.failures_only))


def _tune_gc() -> None:
    """Keep the cyclic garbage collector from stalling the users.

    Everything alive when the load starts (modules, Locust, the profile) stays alive to the
    end; freezing it keeps the collector's full passes from walking it again and again
    during the run.
    """
    gc.collect()
    gc.freeze()


def _watch_rows(rows: Sequence[Sequence[Any]]) -> None:
    """Feed the abort watch; stop the run the moment an abort threshold breaks."""
    watch = _state.watch
    if watch is None or not watch.active:
        return
    failures_only = watch.failures_only
    for row in rows:
        if (failures_only and row[9]) or row[6] == "health":
            continue
        ok = bool(int(row[9]))
        reason = watch.observe(row[7], ok, row[10] or None, float(row[8]), float(row[1]))
        if reason is not None:
            _state.abort = reason.message
            print(f"wsload: aborting the run: {reason.message}", file=sys.stderr, flush=True)
            runner = _state.environment.runner if _state.environment else None
            if runner is not None:
                gevent.spawn(runner.quit)
            return


def add_row_listener(listener: Callable[[Sequence[tuple[Any, ...]]], None]) -> None:
    """Also hand every row recorded on this process (standalone or master) to ``listener``.

    For live views of the run (the web UI tabs): they see exactly the rows written.
    """
    _state.row_listeners.append(listener)


def _sample_health(environment: Environment, sink: _Sink) -> None:
    """Generator health once a second: CPU of this process and event-loop lag.

    Lag is how late a short sleep wakes up: when the generator's own loop is saturated,
    every latency it measures includes that much of its own queueing.
    """
    process = psutil.Process()
    process.cpu_percent()
    node = _node(environment)
    is_master = isinstance(environment.runner, MasterRunner)
    while True:
        worst = 0.0
        deadline = time.monotonic() + HEALTH_INTERVAL_S
        while time.monotonic() < deadline:
            asked = time.monotonic()
            gevent.sleep(0.05)
            worst = max(worst, (time.monotonic() - asked - 0.05) * 1000.0)
        runner = environment.runner
        users = runner.user_count if runner is not None else 0
        now = f"{time.time():.6f}"
        rows: list[tuple[Any, ...]] = [
            (node, now, 0, "", "", "", "health", "health:cpu", f"{process.cpu_percent():.1f}"),
            (node, now, 0, "", "", "", "health", "health:lag", f"{worst:.3f}"),
        ]
        if is_master or not isinstance(runner, WorkerRunner):
            rows.append((node, now, 0, "", "", "", "health", "health:users", str(users)))
        for row in rows:
            sink.add((*row, 1, "", "", "", users, 0, "", "", ""))


@events.report_to_master.add_listener
@events.reset_stats.add_listener
@events.spawning_complete.add_listener
def _flush_turn_stats(**_: Any) -> None:
    """Pending turn samples into Locust's stats before anything reads or resets them.

    Registered at import, so before Locust's own listeners: a worker's stats report
    includes them, and a reset (web UI, ``--reset-stats``) drops them with the rest.
    """
    if _state.runtime is not None:
        _state.runtime.turn_stats.flush()


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    _flush_turn_stats()  # users are stopped: the last of their samples
    if _state.health is not None:
        _state.health.kill(block=False)
        _state.health = None
    sink = _state.sink
    if sink is not None:
        sink.close()  # a worker ships its last rows here, before its final stats report
    if _state.recorder is not None:
        _state.recorder.flush()
        _write_meta(environment, from_namespace(environment.parsed_options), stopped=time.time())


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    recorder = _state.recorder
    _state.sink = None
    if recorder is not None and not recorder.closed:
        recorder.close()  # only now: a master still receives workers' last rows until here
        _write_meta(environment, from_namespace(environment.parsed_options), stopped=time.time())
        _print_summary(recorder)
        _run_gate(environment, recorder)
    _stop_target()


def _run_gate(environment: Environment, recorder: Recorder) -> None:
    """The gate over the finished run folder; it sets the exit code (see README)."""
    if _state.gate is None:
        return
    from wsload.gate.outputs import gate_run_folder  # pandas, once the load has stopped

    result = gate_run_folder(recorder.folder, _state.gate, aborted=_state.abort)
    runner = environment.runner
    options = environment.parsed_options
    on_error = getattr(options, "exit_code_on_error", 1)
    crashed = bool(runner is not None and runner.exceptions)
    locust_code = on_error if runner is not None and (runner.errors or crashed) else 0
    user_gate = bool(getattr(options, "threshold", None) or getattr(options, "thresholds", None))
    code = result.exit_code if user_gate else max(locust_code, result.exit_code)
    if crashed:
        code = max(code, on_error)
    environment.process_exit_code = code


def _print_summary(recorder: Recorder, out: Callable[[str], None] = print) -> None:
    from wsload.run.summary import render

    try:
        out(render(recorder.folder))
        out(f"raw samples: {recorder.path}")
    except (OSError, ValueError, KeyError) as exc:  # an empty run has nothing to summarise
        out(f"wsload: no summary ({exc})")


def _write_meta(environment: Environment, options: RunOptions, stopped: float | None) -> None:
    recorder = _state.recorder
    if recorder is None:
        return
    parsed = vars(environment.parsed_options) if environment.parsed_options else {}
    write_run_json(
        recorder.folder,
        {
            "run_id": recorder.run_id,
            "host": environment.host,
            "embedded_target": _state.target is not None,
            "started": _state.run_started,
            "stopped": stopped,
            "mode": type(environment.runner).__name__,
            "options": redact(parsed),
            "profile": options.profile.summary(),
            "versions": versions(),
        },
    )
