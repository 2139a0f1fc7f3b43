"""A run folder: where it is, its ``run.json``, and what a results writer is.

The records themselves go into columnar tables (``wsload.run.writer``: Arrow IPC streams
while the run goes, Parquet when it stops). ``run.json`` beside them holds the options
(secrets redacted), the profile, versions, host, start and stop.
"""

from __future__ import annotations

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
from wsload.run.long_view import COLUMNS, SCHEMA_VERSION

SAMPLES_FILE = "samples.csv"  # the classic long CSV: ``wsload export --csv``, old runs
RUN_FILE = "run.json"
__all__ = ["COLUMNS", "RUN_FILE", "SAMPLES_FILE", "SCHEMA_VERSION"]
_SECRET_WORDS = ("secret", "password", "token", "key", "credential")


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
    from wsload.run.tables import is_run_folder  # pyarrow: not for the option checks

    if is_run_folder(folder):
        raise ConfigError(
            f"--results {folder} already holds a run (its results tables)",
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
    """Where a run's records end up: ``wsload.run.writer.ArrowWriter``."""

    folder: Path
    path: Path
    run_id: str
    closed: bool
    specs: dict[str, Any]  # the tables it writes by name (the run's turns table among them)

    def write(self, batch: Batch) -> None:
        """Append a batch's records (``write_batches`` of their columns; the sinks make
        the columns themselves, every 50 ms, and call ``write_batches``)."""

    def flush(self) -> None:
        """Hand what is written to the OS: a killed process loses nothing flushed."""

    def write_batches(self, batches: dict[str, Any]) -> None:
        """Append record batches by table, as a worker shipped them."""

    def close(self) -> None: ...


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
