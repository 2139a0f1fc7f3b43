"""The one engine module that imports Locust: options, the embedded target, samples.

Importing it registers wsload's command-line options (also settable by environment and
``locust.conf``, shown in the web UI, secrets masked) and the event listeners that
validate them before any user starts, start the reference target when no ``--host`` is
given, open the run folder, and print the exact summary at the end.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import secrets
import sys
import time
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from wsload.client import ClientOptions, preflight
from wsload.errors import EXIT_CONFIG_ERROR, ConfigError
from wsload.options import OPTION_SPECS, RunOptions, from_namespace, http_base, websocket_url
from wsload.probes import ProbeTokens
from wsload.recorder import (
    Recorder,
    new_run_id,
    prepare_run_folder,
    redact,
    versions,
    write_run_json,
)
from wsload.tokens import TokenMinter, node_tag, subject_for

log = logging.getLogger("wsload")
REQUEST_TYPE = "WS"


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

    def __init__(self, environment: Environment, options: RunOptions, recorder: Recorder | None):
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
        runner = environment.runner
        worker_index = runner.worker_index if isinstance(runner, WorkerRunner) else None
        self.node = node_tag(worker_index)
        self.run_id = recorder.folder.name if recorder else new_run_id()
        self.recorder = recorder
        self.client_options = ClientOptions(
            connect_timeout_s=options.connect_timeout_s,
            handshake_timeout_s=options.connect_timeout_s,
            ack_timeout_s=options.ack_timeout_s,
        )
        self._user_index = itertools.count(1)
        self._turn_index = itertools.count(1)
        self._fire = environment.events.request.fire
        self._probe_tokens: ProbeTokens | None = None

    def probe_tokens(self) -> ProbeTokens:
        """The crafter of defective credentials, made once (it may generate a key)."""
        if self._probe_tokens is None:
            self._probe_tokens = ProbeTokens(self.minter)
        return self._probe_tokens

    def new_user(self) -> tuple[int, str]:
        """Index and subject of a new user, unique across generator processes."""
        index = next(self._user_index)
        return index, subject_for(self.profile.token.subject_prefix, self.node, index)

    def new_turn(self) -> int:
        return next(self._turn_index)

    def user_count(self) -> int:
        runner = self.environment.runner
        return runner.user_count if runner is not None else 0

    def record(
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
    ) -> None:
        """One sample: to Locust's stats and, as a raw row, to the run folder."""
        self._fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=ms,
            response_length=length,
            exception=None if ok else Failure(failure or "failed", detail),
            context={"kind": kind, "subject": subject},
        )
        if self.recorder is not None:
            self.recorder.add(
                (
                    1,
                    self.run_id,
                    self.node,
                    f"{started_at if started_at is not None else time.time():.6f}",
                    user,
                    subject,
                    session,
                    turn or "",
                    kind,
                    name,
                    f"{ms:.3f}",
                    int(ok),
                    failure or "",
                    http_status or "",
                    close_code or "",
                    self.user_count(),
                    length,
                    "" if events_count is None else events_count,
                    detail,
                )
            )


class _State:
    runtime: Runtime | None = None
    runtime_key: tuple[Any, ...] | None = None
    target: Any = None
    recorder: Recorder | None = None
    run_started: float | None = None


_state = _State()


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
        _state.runtime = Runtime(environment, from_namespace(options), _state.recorder)
        _state.runtime_key = key
    return _state.runtime


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    for spec in OPTION_SPECS:
        kwargs: dict[str, Any] = {
            "type": spec.type,
            "default": spec.default,
            "env_var": spec.env,
            "help": f"{spec.help} [env {spec.env}]",
            # Locust writes a UI argument's value into the page source even when it masks
            # the input, so secrets stay off the web UI: they come from env or locust.conf.
            "include_in_web_ui": not spec.secret,
        }
        if spec.choices:
            kwargs["choices"] = spec.choices
        parser.add_argument(spec.flag, **kwargs)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
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
        url = websocket_url(environment.host, options.profile)
        preflight(url)
        if options.results:
            prepare_run_folder(options.results, "check")
        _size_probe_users(environment, options.probe_users)
    except ConfigError as error:
        _fail_config(error)


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
    if isinstance(environment.runner, MasterRunner | WorkerRunner):
        return  # distributed recording comes with the master-side recorder
    try:
        options = from_namespace(environment.parsed_options)
        run_id = new_run_id()
        folder = prepare_run_folder(options.results or None, run_id)
    except ConfigError as error:
        _fail_config(error)
        return
    _state.recorder = Recorder(folder)
    _state.run_started = time.time()
    _write_meta(environment, options, folder.name, stopped=None)
    log.info("wsload: recording raw samples in %s", folder)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    recorder = _state.recorder
    if recorder is None:
        return
    recorder.close()
    options = from_namespace(environment.parsed_options)
    _write_meta(environment, options, recorder.folder.name, stopped=time.time())


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    recorder = _state.recorder
    if recorder is not None:
        if not recorder.closed:
            _on_test_stop(environment)
        from wsload.summary import render

        try:
            print(render(recorder.folder), flush=True)
            print(f"raw samples: {recorder.path}", flush=True)
        except (OSError, ValueError) as exc:  # an empty run has nothing to summarise
            print(f"wsload: no summary ({exc})", flush=True)
    _stop_target()


def _write_meta(
    environment: Environment, options: RunOptions, run_id: str, stopped: float | None
) -> None:
    recorder = _state.recorder
    if recorder is None:
        return
    parsed = vars(environment.parsed_options) if environment.parsed_options else {}
    write_run_json(
        recorder.folder,
        {
            "run_id": run_id,
            "host": environment.host,
            "embedded_target": _state.target is not None,
            "started": _state.run_started,
            "stopped": stopped,
            "options": redact(parsed),
            "profile": options.profile.summary(),
            "versions": versions(),
            "columns": "see wsload.recorder.COLUMNS",
        },
    )
