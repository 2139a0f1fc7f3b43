"""Raw samples: one CSV row per sample of each record, written as it happens, flushed
every second.

CSV because it survives a crash (rows before the last flush are whole lines; a torn last
line is dropped on load), appends without rewriting, and loads into pandas with the
pyarrow engine at about a million rows a second. ``run.json`` beside it holds the options
(secrets redacted), the profile, versions, host, start and stop.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from wsload.errors import ConfigError
from wsload.run.batch import Batch
from wsload.run.records import (
    ConnectionAttempt,
    HealthTick,
    HttpRequest,
    ProbeRecord,
    Record,
    SessionEvent,
    TurnRecord,
    TurnShape,
    shape_samples,
)

SCHEMA_VERSION = 1
SAMPLES_FILE = "samples.csv"
RUN_FILE = "run.json"
COLUMNS = (
    "v",  # schema version
    "run_id",
    "node",  # generator process
    "ts",  # wall clock at the start of the measurement, epoch seconds
    "user",  # user index within the node
    "subject",
    "session",
    "turn",
    "kind",  # connect | tls | auth | event | gap | span | turn | session | probe | http | health
    "name",  # the Locust stats name (health rows: health:cpu, health:lag, health:users)
    "ms",  # latency in ms (health rows: CPU percent, loop lag ms, user count)
    "ok",
    "failure",
    "http_status",
    "close_code",
    "users",  # users running in this process at that moment
    "bytes",
    "events",
    "detail",
    "inflight",  # handshakes (connect/auth rows) or turns (turn rows) in flight in this process
)
# What a generator process produces: every column after v and run_id, which the writer adds.
ROW_FIELDS = COLUMNS[2:]
_TEMPLATE_CACHE_SIZE = 4096
_SECRET_WORDS = ("secret", "password", "token", "key", "credential")


def _quote(text: Any) -> Any:
    """CSV quoting for a free-text value (RFC 4180), only when it needs it."""
    if isinstance(text, str) and ("," in text or '"' in text or "\n" in text or "\r" in text):
        return '"' + text.replace('"', '""') + '"'
    return text


def new_run_id() -> str:
    """Sortable, unique enough across machines: UTC time plus random suffix."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_SECRET_FLAG = re.compile(r"(--?[\w-]*(?:secret|password|token)[\w-]*[ =])(\S+)", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with JWTs and the values of secret-looking flags masked."""
    text = _JWT.sub("***jwt***", text)
    return _SECRET_FLAG.sub(lambda m: m.group(1) + "***", text)


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with every secret-looking value replaced, safe to write anywhere."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        lowered = key.lower()
        is_secret = any(word in lowered for word in _SECRET_WORDS) and not lowered.endswith(
            ("lifetime", "_file", "_path", "private_key", "source", "margin", "credentials")
        )
        if is_secret and value not in (None, "", False):
            out[key] = "***redacted***"
        elif isinstance(value, str):
            out[key] = redact_text(value)
        elif isinstance(value, int | float | bool) or value is None:
            out[key] = value
        elif isinstance(value, list | tuple):
            out[key] = [v if isinstance(v, str | int | float | bool) else str(v) for v in value]
        else:
            out[key] = str(value)
    return out


LATEST_LINK = "latest"  # beside the run folders of results/: the newest run


def prepare_run_folder(
    base: str | Path | None, run_id: str, *, link_latest: bool | None = None
) -> Path:
    """Create the run folder (default ``results/<run-id>``); ``ConfigError`` if unusable.

    A run in the default place also becomes ``results/latest`` (``link_latest``: None means
    only then), once its folder exists and is writable, so a folder that failed to start is
    never the latest. Pass ``link_latest=False`` to link later with ``link_latest_run``.
    """
    folder = Path(base) if base else Path("results") / run_id
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"--results {folder} is a file, not a folder",
            fix="give --results a folder path (it is created when missing)",
        )
    if folder.is_dir() and (folder / SAMPLES_FILE).exists():
        raise ConfigError(
            f"--results {folder} already holds a run ({SAMPLES_FILE})",
            fix="give a new folder, or leave --results out for results/<run-id>/",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write to the results folder {folder}: {exc.strerror or exc}",
            fix="give --results a folder you can write to",
        ) from None
    if link_latest is None:
        link_latest = not base
    if link_latest:
        link_latest_run(folder)
    return folder


def link_latest_run(folder: Path) -> Path | None:
    """Point ``latest`` beside ``folder`` at it: a relative symlink (``latest -> <run-id>``),
    so the pair can be moved or copied together, replaced atomically (a new link renamed
    over the old one) so a reader never finds it missing or half made.

    Where symlinks cannot be made (Windows without the privilege or developer mode, some
    network and FAT file systems) ``latest`` is a one-line text file naming the run folder,
    replaced the same way; ``wsload.analysis.load_run`` and so the notebooks and reports
    follow it. Returns the link, or None when neither could be written (a ``latest`` that is
    a real folder is left alone); a run never fails because of its link.
    """
    link = folder.parent / LATEST_LINK
    if link.is_dir() and not link.is_symlink():
        return None
    temporary = folder.parent / f".{LATEST_LINK}-{secrets.token_hex(4)}"
    try:
        try:
            os.symlink(folder.name, temporary, target_is_directory=True)
        except (OSError, NotImplementedError):
            temporary.write_text(folder.name + "\n")
        os.replace(temporary, link)
    except OSError:
        temporary.unlink(missing_ok=True)
        return None
    return link


class ResultsWriter(Protocol):
    """Where a run's records end up. ``CsvWriter`` is the one there is; any other format
    (Arrow, say) is another class with these members."""

    folder: Path
    path: Path
    run_id: str
    closed: bool

    def write(self, batch: Batch) -> None:
        """Append a batch's records (called off the event loop, one batch at a time)."""

    def flush(self) -> None:
        """Hand what is written to the OS: a killed process loses nothing flushed."""

    def close(self) -> None: ...


class CsvWriter:
    """Appends records to ``samples.csv`` as ``COLUMNS`` rows; flushes at most a second
    after a write.

    One %-format per row: twice as fast as csv.writer, which matters at a dozen rows per
    agent turn. Only two columns hold free text (subject, detail); ``_quote`` gives them
    CSV quoting, every other column is a number or a name wsload chose. The rows of a turn
    come from one template per turn shape (``TurnRecord.shape``), filled in one go.
    """

    def __init__(self, folder: Path, run_id: str, *, flush_interval_s: float = 1.0) -> None:
        self.folder = folder
        self.run_id = run_id
        self._head = f"{SCHEMA_VERSION},{run_id}," + "%s," * 6
        self._tail = ",".join(["%s"] * (len(ROW_FIELDS) - 6)) + "\n"
        self._turn_templates: dict[TurnShape, str] = {}
        self._lines = {
            TurnRecord: self._turn_lines,
            HealthTick: self._health_lines,
            ConnectionAttempt: self._sample_lines,
            SessionEvent: self._sample_lines,
            ProbeRecord: self._sample_lines,
            HttpRequest: self._sample_lines,
        }
        self.path = folder / SAMPLES_FILE
        new = not self.path.exists()
        self._file = self.path.open("a", newline="", encoding="utf-8")
        if new:
            csv.writer(self._file).writerow(COLUMNS)
            self._file.flush()
        self._flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self.closed = False

    def write(self, batch: Batch) -> None:
        if self.closed:
            return
        node = batch.node
        lines = self._lines
        users = 0
        out = []
        for item in batch.items:
            if type(item) is int:
                users = item
            else:
                out.append(lines[type(item)](item, node, users))
        self._file.write("".join(out))
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            self.flush()

    def _turn_lines(self, record: TurnRecord, node: str, users: int) -> str:
        """``\\x00`` marks where each row's shared head goes and ``\\x01`` its user count;
        the template holds only event names and numbers, so no mark is ever mistaken, and
        the free text (subject, detail) goes in after the marks are filled."""
        who = record.who
        head = self._head % (
            node, round(record.started_at, 6), who.user, _quote(who.subject), who.session,
            record.turn,
        )  # fmt: skip
        shape = record.shape()
        template = self._turn_templates.get(shape)
        if template is None:
            if len(self._turn_templates) >= _TEMPLATE_CACHE_SIZE:
                self._turn_templates.clear()
            template = "".join(
                f"\x00{kind},{_quote(name).replace('%', '%%')},%.3f,1,,,,\x01,0,,,\n"
                for kind, name in shape_samples(shape)
            )
            self._turn_templates[shape] = template
        result = record.result
        rows = (template % tuple(record.timings())).replace("\x01", str(users))
        return (
            f"{rows.replace(chr(0), head)}{head}turn,turn:e2e,{record.e2e_ms:.3f},"
            f"{1 if result.ok else 0},{result.failure or ''},,,{users},{record.sent_bytes},"
            f"{result.events},{_quote(record.detail)},{record.inflight}\n"
        )

    def _sample_lines(self, record: Record, node: str, users: int) -> str:
        """The rows of a connection attempt, probe, session event or HTTP request: one per
        sample. HTTP status and close code go on failed rows (a probe's and a request's:
        always, how the server answered is their result)."""
        who = record.who  # type: ignore[union-attr]
        head = self._head % (
            node, round(record.started_at, 6), who.user, _quote(who.subject), who.session, "",
        )  # fmt: skip
        kind = type(record)
        always = kind is ProbeRecord or kind is HttpRequest
        status = getattr(record, "http_status", None) or ""
        code = getattr(record, "close_code", None) or ""
        inflight = record.inflight if kind is ConnectionAttempt else ""  # type: ignore[union-attr]
        length = record.length if kind is HttpRequest else 0  # type: ignore[union-attr]
        tail = self._tail
        lines = []
        for sample in record.samples():
            failure = sample.failure
            said = always or failure is not None
            values = (
                sample.kind, sample.name, round(sample.ms, 3), 0 if failure else 1, failure or "",
                status if said else "", code if said else "", users, length, "",
                _quote(sample.detail), inflight,
            )  # fmt: skip
            lines.append(head + tail % values)
        return "".join(lines)

    def _health_lines(self, tick: HealthTick, node: str, users: int) -> str:
        head = self._head % (node, f"{tick.at:.6f}", 0, "", "", "")
        end = f",1,,,,{users},0,,,\n"
        lines = (
            f"{head}health,health:cpu,{tick.cpu_percent:.1f}{end}"
            f"{head}health,health:lag,{tick.lag_ms:.3f}{end}"
        )
        if tick.users is not None:
            lines += f"{head}health,health:users,{tick.users}{end}"
        return lines

    def flush(self) -> None:
        if self.closed:
            return
        self._file.flush()  # to the OS: a killed process loses nothing flushed
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self._file.close()
            self.closed = True


def write_run_json(folder: Path, meta: Mapping[str, Any]) -> None:
    """Write ``run.json`` atomically (a crash never leaves half a file)."""
    tmp = folder / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(folder / RUN_FILE)


def versions() -> dict[str, str]:
    """Versions of what produced the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("wsload", "locust", "gevent", "PyJWT", "orjson"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
