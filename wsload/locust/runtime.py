"""What every user of a run reads: the target's URL, the profile, the options, the token
minter, and ``record``, the seam every measurement leaves through."""

from __future__ import annotations

import itertools
import json
import operator
import uuid
from collections.abc import Callable

from locust.env import Environment
from locust.runners import WorkerRunner

from wsload.config.idp_tokens import run_minter
from wsload.config.options import OPTION_DESTS, RunOptions, from_namespace, http_base, websocket_url
from wsload.config.templates import JsonTemplate
from wsload.config.token_file import FileToken
from wsload.config.tokens import Credential, TokenMinter, node_tag, subject_for
from wsload.errors import ConfigError
from wsload.locust.process import PROCESS
from wsload.locust.recording import Recording
from wsload.net.client import ClientOptions
from wsload.net.probes import ProbeTokens
from wsload.net.source_ips import SourcePicker, worker_share
from wsload.run.records import Record


class Runtime:
    """Per-process state shared by all users of one test run."""

    def __init__(self, environment: Environment, options: RunOptions, recording: Recording):
        self.environment = environment
        self.options = options
        self.profile = options.profile
        self.grammar = options.profile.grammar
        # None when tokens come from elsewhere and no key is given: wsload cannot sign.
        self.minter: TokenMinter | None = run_minter(options)
        if not environment.host:
            raise ConfigError("no --host to load", fix="pass --host ws://HOST:PORT")
        self.url = websocket_url(environment.host, options.profile)
        self.http_url = http_base(self.url)
        self.node = node_of(environment)
        self.client_options = ClientOptions(
            connect_timeout_s=options.connect_timeout_s,
            handshake_timeout_s=options.connect_timeout_s,
            ack_timeout_s=options.ack_timeout_s,
            compression=options.compression,
            tls=options.tls,
            source=source_picker(options.source_ips, environment),
        )
        self.recording = recording
        # The one seam every measurement leaves through: a typed record
        # (``wsload.run.records``) into Locust's stats and the run's results.
        self.record: Callable[[Record], None] = recording.record
        self._user_index = itertools.count(1)
        self._turn_index = itertools.count(1)
        self._probe_tokens: ProbeTokens | None = None
        message = options.profile.chat.message
        # "{message_id}": a fresh UUID per message (Chainlit's steps need one), only if used
        self._message_ids = "{message_id}" in json.dumps(message)
        names = ("content", "thread_id", "message_id") if self._message_ids else None
        self._chat_template = JsonTemplate(message, names or ("content", "thread_id"))
        self.inflight_handshakes = 0  # in this process, for the inflight column
        self.inflight_turns = 0
        self.open_sessions = 0  # held by connections.py's users, for memory per session

    def chat_payload(self, content: str, thread_id: str) -> str:
        """The chat message as sent, from the profile's template."""
        if self._message_ids:
            return self._chat_template.render(
                content=content, thread_id=thread_id, message_id=str(uuid.uuid4())
            )
        return self._chat_template.render(content=content, thread_id=thread_id)

    def probe_tokens(self, sample: str | None = None) -> ProbeTokens:
        """The crafter of defective credentials, made once (it may generate a key);
        without a minter, from ``sample``, a real token of the run's token source."""
        if self._probe_tokens is None:
            self._probe_tokens = ProbeTokens(self.minter, sample)
        return self._probe_tokens

    def file_token_for(self, index: int) -> FileToken | None:
        """The token file line of user ``index``, spread over all workers; one user a line."""
        tokens = self.options.token_file
        slot = self._slot(index)
        return tokens[slot] if slot < len(tokens) else None

    def credential_for(self, index: int) -> Credential | None:
        """The login of user ``index``, spread over all workers; None past the profile's cap.

        A credential serves at most ``limits.connections_per_user`` users at once, so one
        subject never holds more sessions than the backend allows.
        """
        creds = self.options.credentials
        slot = self._slot(index)
        if not creds or slot >= len(creds) * self.profile.limits.connections_per_user:
            return None
        return creds[slot % len(creds)]

    def _slot(self, index: int) -> int:
        """User ``index`` of this process as a position across all workers."""
        parsed = self.environment.parsed_options
        workers = max(1, int(getattr(parsed, "wsload_workers", 1) or 1))
        runner = self.environment.runner
        worker = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        return (index - 1) * workers + worker

    def new_user(self) -> tuple[int, str]:
        """Index and subject of a new user, unique across generator processes."""
        index = next(self._user_index)
        return index, subject_for(self.profile.token.subject_prefix, self.node, index)

    def new_turn(self) -> int:
        return next(self._turn_index)

    def user_count(self) -> int:
        runner = self.environment.runner
        return runner.user_count if runner is not None else 0


def source_picker(ips: tuple[str, ...], environment: Environment) -> SourcePicker | None:
    """This process's share of ``--source-ips`` (None: the kernel picks the address)."""
    if not ips:
        return None
    workers = max(1, int(getattr(environment.parsed_options, "wsload_workers", 1) or 1))
    runner = environment.runner
    worker = runner.worker_index if isinstance(runner, WorkerRunner) else 0
    return SourcePicker(worker_share(ips, worker, workers))


def node_of(environment: Environment) -> str:
    """The generator process's tag in the results: ``w<index>`` on a worker."""
    runner = environment.runner
    return node_tag(runner.worker_index if isinstance(runner, WorkerRunner) else None)


def recording_for(environment: Environment) -> Recording:
    """The process's recorder, made on first use."""
    if PROCESS.recording is None:
        request_events = bool(getattr(environment.parsed_options, "request_events", False))
        PROCESS.recording = Recording(environment, request_events=request_events)
    return PROCESS.recording


_VALUES = operator.attrgetter(*OPTION_DESTS)


def _option_values(options: object) -> tuple[object, ...]:
    """Every wsload option's value: the runtime's key, read at each user start (thousands a
    second in a capacity ramp), so in one C call where every option is set."""
    try:
        return _VALUES(options)
    except AttributeError:  # options parsed without wsload's (a test's bare namespace)
        return tuple(getattr(options, dest, None) for dest in OPTION_DESTS)


def runtime_for(environment: Environment) -> Runtime:
    """The process's runtime, rebuilt when the options or host changed (web UI, master)."""
    options = environment.parsed_options
    key = (environment.host, *_option_values(options))
    if PROCESS.runtime is None or PROCESS.runtime_key != key:
        PROCESS.runtime = Runtime(environment, from_namespace(options), recording_for(environment))
        PROCESS.runtime_key = key
    return PROCESS.runtime
