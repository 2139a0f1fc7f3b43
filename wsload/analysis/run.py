"""``load_run``: a run folder as tidy pandas tables (samples, turns, sessions, health, steps).

One row per observation, one column per variable, every latency in a column named ``*_ms``
and every instant both as epoch seconds (``ts``), seconds since the run started (``t_s``)
and a UTC datetime (``time``), so notebooks, the report and the gate read one shape.
Rows of one turn share (node, session, turn); rows of one session share (node, session).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from wsload.errors import ConfigError
from wsload.run.meta import crash_notice
from wsload.run.recorder import COLUMNS, RUN_FILE, SAMPLES_FILE
from wsload.run.summary import load_samples
from wsload.run.tables import has_tables, require_run_folder

from .steps import assign_steps, derive_steps, empty_steps, read_steps_file, users_timeline
from .streams import stream_table

TURN_KEY = ["node", "session", "turn"]
SESSION_KEY = ["node", "session"]
# columns a turn takes from its e2e row: who, when, under which load
_TURN_CONTEXT = ["user", "subject", "ts", "t_s", "time", "users", "step", "step_users", "in_hold"]
HEALTH_UNITS = {
    "cpu": "percent",
    "lag": "ms",
    "users": "users",
    "memory_kb": "KiB",
    "sessions": "sessions",
    "target_memory_kb": "KiB",
    "target_sessions": "sessions",
}


@dataclass(frozen=True)
class Run:
    """One run folder, loaded. Tables are plain DataFrames; ``meta`` is ``run.json``."""

    path: Path
    meta: dict[str, Any]
    started: float  # epoch seconds of the run start (run.json, else the first sample)
    samples: pd.DataFrame
    turns: pd.DataFrame
    sessions: pd.DataFrame
    health: pd.DataFrame
    steps: pd.DataFrame
    timeline: pd.DataFrame  # total users across nodes per second
    stages: list[str] = field(default_factory=list)  # turn events in the order they arrive

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.path.name)

    @property
    def nodes(self) -> list[str]:
        return sorted(self.samples["node"].dropna().unique().tolist())

    @property
    def last_sample_end(self) -> float | None:
        """Epoch seconds when the last sample ended (its ``ts`` plus its latency)."""
        ends = self.samples["ts"] + self.samples["latency_ms"].fillna(0.0) / 1000.0
        return float(ends.max()) if len(ends) else None

    @property
    def stopped_cleanly(self) -> bool:
        """True only when ``run.json`` records a stop time: the run ended as planned."""
        stopped = self.meta.get("stopped")
        return isinstance(stopped, int | float) and not isinstance(stopped, bool)

    @property
    def crash_notice(self) -> str | None:
        """The warning for a run that started but never recorded its stop (killed or
        crashed), naming about when it ended; None for a clean stop or no ``run.json``."""
        return crash_notice(self.meta, self.last_sample_end)

    @property
    def stopped(self) -> float:
        """The recorded stop, else (a crash) the end of the last sample."""
        if self.stopped_cleanly:
            return float(self.meta["stopped"])
        last = self.last_sample_end
        return last if last is not None else self.started

    @property
    def duration_s(self) -> float:
        return max(self.stopped - self.started, 0.0)

    @property
    def options(self) -> dict[str, Any]:
        options = self.meta.get("options")
        return options if isinstance(options, dict) else {}

    @property
    def max_users(self) -> int:
        return int(self.timeline["users"].max()) if len(self.timeline) else 0


# A checkout: the repository holding the package, and the notebooks' folder in it. A relative
# run path is tried against the working folder, then these (a Jupyter kernel starts in the
# notebook's folder, so ``WSLOAD_RUN=results/<run-id>`` works from either place).
REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPOSITORY / "analysis"


def resolve_run_path(path: str | Path) -> Path:
    """The run folder ``path`` names: as given, else relative to the repository, else to
    ``analysis/``; a ``latest`` written as a text file (no symlinks) is followed to the
    folder it names. Returns ``path`` itself when nothing matches (``load_run`` says so)."""
    given = Path(path).expanduser()
    candidates = [given]
    if not given.is_absolute() and (REPOSITORY / "pyproject.toml").is_file():
        candidates += [REPOSITORY / given, NOTEBOOKS / given]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
        if candidate.is_file() and candidate.name == "latest":
            named = candidate.read_text(errors="replace").strip()
            target = candidate.parent / named
            if named and "/" not in named and "\\" not in named and target.is_dir():
                return target
    return given


def load_run(path: str | Path, *, min_hold_s: float = 2.0) -> Run:
    """Load a run folder; ``ConfigError`` (one clear message) when it is not a usable run.

    A relative path is found from the working folder, the repository or ``analysis/``
    (``resolve_run_path``)."""
    folder = resolve_run_path(path)
    if not folder.is_dir():
        if Path(path).name == "latest":
            raise ConfigError(
                f"{path} does not exist: no run has been made here yet",
                fix="run `make demo` (or any run without --results), or give a run folder, "
                "e.g. results/<run-id>",
            )
        raise ConfigError(
            f"{folder} is not a folder", fix="give the run folder, e.g. results/<run-id>"
        )
    require_run_folder(folder)
    meta = _read_meta(folder)
    raw = _read_samples(folder)
    origin = _origin(meta, raw)
    samples, health = _tidy_samples(raw, origin)
    timeline = _timeline(samples, health, origin)
    steps = read_steps_file(folder)
    if steps is None:
        steps = derive_steps(timeline, origin, min_hold_s) if len(timeline) else empty_steps()
    ended = samples["ts"] + samples["latency_ms"].fillna(0.0) / 1000.0
    samples[["step", "step_users", "in_hold"]] = assign_steps(ended, steps)
    for frame, column in ((steps, "start"), (steps, "end")):
        frame[f"{column}_time"] = pd.to_datetime(frame[column], unit="s", utc=True)
    turns, stages = _turns(samples)
    return Run(
        path=folder,
        meta=meta,
        started=origin,
        samples=samples,
        turns=turns,
        sessions=_sessions(samples),
        health=health,
        steps=steps,
        timeline=timeline,
        stages=stages,
    )


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / RUN_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} is not readable JSON ({exc})", fix="give a folder a wsload run wrote"
        ) from None
    return meta if isinstance(meta, dict) else {}


_REQUIRED = ("node", "ts", "kind", "name", "ms", "ok", "users")


def _read_samples(folder: Path) -> pd.DataFrame:
    if has_tables(folder):
        raw = load_samples(folder)
        if raw.empty:
            raise ConfigError(
                f"{folder} holds no samples",
                fix="give a run that ran long enough to record some",
            )
        return raw
    path = folder / SAMPLES_FILE
    not_ours = "give a folder a wsload run wrote"
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            header = handle.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not readable samples ({exc})", fix=not_ours) from None
    if not header:
        raise ConfigError(f"{path} is empty", fix="give a run that recorded samples")
    missing = [c for c in _REQUIRED if c not in header.split(",")]
    if missing:
        raise ConfigError(
            f"{path} lacks the columns {', '.join(missing)} (expected {', '.join(COLUMNS)})",
            fix=not_ours,
        )
    try:
        raw = load_samples(folder)
    except (pd.errors.ParserError, UnicodeDecodeError, KeyError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a wsload samples file ({type(exc).__name__}: {exc})", fix=not_ours
        ) from None
    if raw.empty:
        raise ConfigError(
            f"{path} holds no samples", fix="give a run that ran long enough to record some"
        )
    return raw


def _origin(meta: dict[str, Any], raw: pd.DataFrame) -> float:
    started = meta.get("started")
    first = float(raw["ts"].min())
    if isinstance(started, int | float) and started <= first + 1.0:
        return float(started)
    return first


def _tidy_samples(raw: pd.DataFrame, origin: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = raw.rename(columns={"ms": "latency_ms"})
    for column in ("node", "kind", "name"):
        frame[column] = frame[column].astype("string")
    for column in ("subject", "session", "failure", "detail"):
        if column in frame:
            frame[column] = frame[column].astype("string").replace("", pd.NA)
    numeric = ("turn", "http_status", "close_code", "events", "user", "users", "bytes", "inflight")
    for column in numeric:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce")
    frame["ts"] = pd.to_numeric(frame["ts"], errors="coerce")
    frame = frame.dropna(subset=["ts"])
    frame["t_s"] = frame["ts"] - origin
    frame["time"] = pd.to_datetime(frame["ts"], unit="s", utc=True)
    is_health = frame["kind"] == "health"
    health = _health(frame.loc[is_health], origin)
    samples = frame.loc[~is_health].reset_index(drop=True)
    samples["users"] = samples["users"].fillna(0)
    return samples, health


def _timeline(samples: pd.DataFrame, health: pd.DataFrame, origin: float) -> pd.DataFrame:
    """Total users running per second, across nodes.

    ``health:users`` rows come from the process that knows the total (the master, or the
    only process), once a second: from their first one on they are the truth. Before it,
    and in runs without them, each sample's per-process count (observed when the sample
    was recorded, at its end) is summed over the nodes.
    """
    counted = users_timeline(
        pd.DataFrame(
            {
                "node": samples["node"],
                "ts": samples["ts"] + samples["latency_ms"].fillna(0.0) / 1000.0,
                "users": samples["users"],
            }
        ),
        origin,
    )
    return merge_timeline(counted, health, origin)


def merge_timeline(counted: pd.DataFrame, health: pd.DataFrame, origin: float) -> pd.DataFrame:
    """The timeline counted from the samples, replaced by the ``health:users`` totals from
    their first one on."""
    totals = health.loc[health["metric"] == "users"]
    if totals.empty:
        return counted
    reported = users_timeline(
        pd.DataFrame({"node": totals["node"], "ts": totals["ts"], "users": totals["value"]}),
        origin,
    )
    first = math.floor(float(totals["ts"].min()) - origin)
    merged = pd.concat(
        [counted.loc[counted["t_s"] < first], reported.loc[reported["t_s"] >= first]]
    )
    return merged.reset_index(drop=True)


def _health(rows: pd.DataFrame, origin: float) -> pd.DataFrame:
    """Generator health (CPU percent, event-loop lag ms) per node, long form."""
    metric = rows["name"].str.removeprefix("health:")
    return pd.DataFrame(
        {
            "node": rows["node"],
            "ts": rows["ts"],
            "t_s": rows["ts"] - origin,
            "time": rows["time"],
            "metric": metric.astype("string"),
            "value": rows["latency_ms"],
            "unit": metric.map(HEALTH_UNITS).fillna("").astype("string"),
        }
    ).reset_index(drop=True)


def _turns(samples: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per turn: its verdict and a latency column per stage (``<stage>_ms``)."""
    rows = samples.loc[samples["turn"].notna() & samples["kind"].isin(["event", "gap", "span"])]
    base = samples.loc[samples["turn"].notna() & (samples["kind"] == "turn")]
    base = base.drop_duplicates(TURN_KEY, keep="last")
    turns = base[[*TURN_KEY, *_TURN_CONTEXT]].copy()
    turns["e2e_ms"] = base["latency_ms"].to_numpy()
    turns["ok"] = base["ok"].to_numpy()
    turns["failure"] = pd.array(base["failure"].to_numpy(), dtype="string")
    turns["events"] = pd.array(base["events"].to_numpy(), dtype="Int64")
    turns["end_ts"] = turns["ts"] + turns["e2e_ms"] / 1000.0
    turns = turns.set_index(TURN_KEY)

    events = rows.loc[rows["kind"] == "event"]
    stage = events["name"].str.removeprefix("turn:")
    firsts = events.assign(stage=stage).groupby([*TURN_KEY, "stage"])["latency_ms"].first()
    firsts = firsts.unstack("stage")
    order = firsts.median().sort_values(kind="stable").index.tolist()
    if "ttfe" in order:  # the first event under its own name; keep it first
        order.remove("ttfe")
        order.insert(0, "ttfe")
    stages = [s for s in order if s != "ttfe"]
    firsts = firsts[order].add_suffix("_ms")

    gaps = rows.loc[rows["kind"] == "gap"].groupby(TURN_KEY)["latency_ms"]
    gap_table = pd.DataFrame(
        {"gap_max_ms": gaps.max(), "gap_mean_ms": gaps.mean(), "gaps": gaps.size()}
    )
    spans = rows.loc[rows["kind"] == "span"]
    span_name = spans["name"].str.removeprefix("turn:")
    span_sum = spans.assign(span=span_name).groupby([*TURN_KEY, "span"])["latency_ms"].sum()
    span_table = span_sum.unstack("span").add_suffix("_span_ms")

    turns = turns.join(firsts, how="left").join(gap_table, how="left").join(span_table)
    streamed = stream_table(samples, TURN_KEY)
    if not streamed.empty:  # streamed answers: ttft_ms, itl_*, tpot_ms, output tokens
        turns = turns.join(streamed, how="left")
    turns["gaps"] = turns["gaps"].fillna(0).astype(int)
    turns = turns.reset_index().sort_values("ts", kind="stable").reset_index(drop=True)
    return turns, stages


def _sessions(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per session: connect and auth latency, verdict, lifetime and its turns."""
    with_session = samples.loc[samples["session"].notna()]
    if with_session.empty:
        return pd.DataFrame(
            columns=[*SESSION_KEY, "user", "subject", "start", "end", "connect_ms", "auth_ms"]
        )
    grouped = with_session.groupby(SESSION_KEY, sort=False)
    ends = with_session["ts"] + with_session["latency_ms"].fillna(0) / 1000.0
    table = pd.DataFrame(
        {
            "user": grouped["user"].first(),
            "subject": grouped["subject"].first(),
            "start": grouped["ts"].min(),
            "end": ends.groupby([with_session["node"], with_session["session"]]).max(),
        }
    )
    for name in ("connect", "auth"):
        rows = with_session.loc[with_session["name"] == name].drop_duplicates(SESSION_KEY)
        rows = rows.set_index(SESSION_KEY)
        table[f"{name}_ms"] = rows["latency_ms"]
        table[f"{name}_ok"] = rows["ok"].astype("boolean")
        table[f"{name}_failure"] = rows["failure"]
    opening = with_session.loc[with_session["name"].isin(["connect", "auth"]) & ~with_session["ok"]]
    first_failure = opening.drop_duplicates(SESSION_KEY).set_index(SESSION_KEY)["failure"]
    table["failure"] = first_failure.reindex(table.index).astype("string")
    table["ok"] = table["failure"].isna() & table["connect_ok"].fillna(False).astype(bool)
    turns = with_session.loc[with_session["kind"] == "turn"]
    table["turns"] = turns.groupby(SESSION_KEY).size().reindex(table.index).fillna(0).astype(int)
    table["turns_failed"] = (
        turns.loc[~turns["ok"]].groupby(SESSION_KEY).size().reindex(table.index).fillna(0)
    ).astype(int)
    disconnects = with_session.loc[with_session["name"] == "disconnect"]
    last_disconnect = disconnects.drop_duplicates(SESSION_KEY, keep="last").set_index(SESSION_KEY)
    table["disconnect"] = last_disconnect["failure"].reindex(table.index).astype("string")
    table["duration_s"] = table["end"] - table["start"]
    table["start_time"] = pd.to_datetime(table["start"], unit="s", utc=True)
    table["end_time"] = pd.to_datetime(table["end"], unit="s", utc=True)
    table = table.reset_index().sort_values("start", kind="stable").reset_index(drop=True)
    return table
