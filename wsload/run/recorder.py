"""Raw samples: one CSV row per measurement, written as it happens, flushed every second.

CSV because it survives a crash (rows before the last flush are whole lines; a torn last
line is dropped on load), appends without rewriting, and loads into pandas with the
pyarrow engine at about a million rows a second. ``run.json`` beside it holds the options
(secrets redacted), the profile, versions, host, start and stop.
"""

from __future__ import annotations

import csv
import json
import platform
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wsload.errors import ConfigError

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
    "kind",  # connect | auth | event | gap | span | turn | session | probe | http | health
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
# A turn block: every sample of one agent turn as one item. A turn is a dozen rows that
# differ only in kind, name and ms; building one tuple per turn on the hot path, and
# formatting its rows in one go, costs a third of a dozen full rows. ``labels`` are
# "kind,name" (CSV-ready), one per value; ``end`` is the ``turn:e2e`` row's own fields.
TURN_BLOCK_FIELDS = (
    "node", "ts", "user", "subject", "session", "turn", "users", "labels", "values", "end",
)  # fmt: skip
TURN_END_FIELDS = ("ms", "ok", "failure", "bytes", "events", "detail", "inflight")
_TEMPLATE_CACHE_SIZE = 4096
_SECRET_WORDS = ("secret", "password", "token", "key", "credential")


def _quote(text: Any) -> Any:
    """CSV quoting for a free-text value (RFC 4180), only when it needs it."""
    if isinstance(text, str) and ("," in text or '"' in text or "\n" in text or "\r" in text):
        return '"' + text.replace('"', '""') + '"'
    return text


def turn_label(kind: str, name: str) -> str:
    """The ``labels`` entry of a turn block for one sample."""
    return f"{kind},{_quote(name)}"


def parse_label(label: str) -> tuple[str, str]:
    """Kind and name of a turn block's label."""
    kind, name = label.split(",", 1)
    if name.startswith('"'):
        name = name[1:-1].replace('""', '"')
    return kind, name


def expand(items: Iterable[Sequence[Any]], *, failed_only: bool = False) -> list[Sequence[Any]]:
    """``ROW_FIELDS`` rows of a batch of rows and turn blocks, for readers of single rows.

    ``failed_only`` keeps just the failed rows (a turn's samples but ``turn:e2e`` never
    fail), which is all an abort watch on failures needs, at a fraction of the cost.
    """
    rows: list[Sequence[Any]] = []
    ok_at = ROW_FIELDS.index("ok")
    for item in items:
        if len(item) != len(TURN_BLOCK_FIELDS):
            if not (failed_only and int(item[ok_at])):
                rows.append(item)
            continue
        node, ts, user, subject, session, turn, users, labels, values, end = item
        ms, ok, failure, length, events, detail, inflight = end
        if failed_only and ok:
            continue
        prefix = (node, ts, user, subject, session, turn)
        if not failed_only:
            for label, value in zip(labels, values, strict=True):
                kind, name = parse_label(label)
                rows.append(
                    (*prefix, kind, name, round(value, 3), 1, "", "", "", users, 0, "", "", "")
                )
        rows.append(
            (*prefix, "turn", "turn:e2e", round(ms, 3), ok, failure, "", "", users, length,
             events, detail, inflight)
        )  # fmt: skip
    return rows


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


def prepare_run_folder(base: str | Path | None, run_id: str) -> Path:
    """Create the run folder (default ``results/<run-id>``); ``ConfigError`` if unusable."""
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
    return folder


class Recorder:
    """Appends sample rows to ``samples.csv``; flushes at most a second after a write.

    Rows come in as ``ROW_FIELDS`` tuples or turn blocks (``TURN_BLOCK_FIELDS``), from
    this process or shipped by workers; the recorder stamps them with the schema version
    and its run id.
    """

    def __init__(self, folder: Path, run_id: str, *, flush_interval_s: float = 1.0) -> None:
        self.folder = folder
        self.run_id = run_id
        # One %-format per row: twice as fast as csv.writer, which matters at a dozen rows
        # per agent turn. Only two columns hold free text (subject, detail); ``_quote``
        # gives them CSV quoting, every other column is a number or a name wsload chose.
        self._head = f"{SCHEMA_VERSION},{run_id}," + "%s," * 6
        self._tail = ",".join(["%s"] * (len(ROW_FIELDS) - 6)) + "\n"
        self._turn_templates: dict[tuple[str, ...], str] = {}
        self.path = folder / SAMPLES_FILE
        new = not self.path.exists()
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(COLUMNS)
            self._file.flush()
        self._flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self.closed = False

    def add(self, row: tuple[Any, ...]) -> None:
        """Write one row (values in ``ROW_FIELDS`` order)."""
        self.add_many((row,))

    def add_many(self, rows: Iterable[Sequence[Any]]) -> None:
        if self.closed:
            return
        # Consecutive rows often share their first six fields (node, ts, user, subject,
        # session, turn), as a connection attempt's connect and auth do: format those once
        # per run of equal ones, the rest per row.
        head_line, tail_line = self._head, self._tail
        lines = []
        last_key: Any = None
        head = ""
        for row in rows:
            if len(row) == len(TURN_BLOCK_FIELDS):
                lines.append(self._turn_lines(row))
                continue
            key = row[:6]
            if key != last_key:
                head = head_line % (*key[:3], _quote(key[3]), *key[4:])
                last_key = key
            lines.append(head + tail_line % (*row[6:16], _quote(row[16]), *row[17:]))
        self._file.write("".join(lines))
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            self.flush()

    def _turn_lines(self, block: Sequence[Any]) -> str:
        """The rows of one turn block: one template per turn shape, filled in one go.

        ``\\x00`` marks where each row's shared head goes and ``\\x01`` its user count; the
        template holds only event names and numbers, so no mark is ever
        mistaken, and the free text (subject, detail) goes in after the marks are filled.
        """
        node, ts, user, subject, session, turn, users, labels, values, end = block
        head = self._head % (node, ts, user, _quote(subject), session, turn)
        key = labels if type(labels) is tuple else tuple(labels)  # lists when shipped
        template = self._turn_templates.get(key)
        if template is None:
            if len(self._turn_templates) >= _TEMPLATE_CACHE_SIZE:
                self._turn_templates.clear()
            template = "".join(
                "\x00" + label.replace("%", "%%") + ",%.3f,1,,,,\x01,0,,,\n" for label in key
            )
            self._turn_templates[key] = template
        ms, ok, failure, length, events, detail, inflight = end
        rows = (template % tuple(values)).replace("\x01", str(users)).replace("\x00", head)
        return (
            f"{rows}{head}turn,turn:e2e,{ms:.3f},{ok},{failure},,,{users},{length},{events},"
            f"{_quote(detail)},{inflight}\n"
        )

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
    for pkg in ("wsload", "locust", "websocket-client", "gevent", "PyJWT"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
