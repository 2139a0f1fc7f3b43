"""Connection capacity of a run: open sessions over time, latency and memory against them.

A run of ``locustfiles/connections.py`` holds sessions rather than sending turns; what it
measures is how connect and auth latency and memory (the generator's and the reference
target's) grow with the sessions held, how long the ramp took, and the largest count held
before anything failed. Open sessions are counted from the samples themselves: +1 at each
successful ack, -1 at each ``session:disconnect``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from wsload.analysis.run import Run

HOLD_METRICS = ("sessions", "memory_kb")
# samples whose failure spoils "held cleanly": a session that did not open or did not last
CLEAN_NAMES = ("connect", "auth", "ping", "session:disconnect")


@dataclass(frozen=True)
class ConnectionCapacity:
    """What a connection-capacity run showed."""

    peak_sessions: int  # most sessions open at once (acks minus disconnects)
    held_cleanly: int  # most sessions open before the first failure (all, when none failed)
    first_failure_s: float | None  # run second of the first failure, None when none
    ramp_s: float | None  # first connect to the moment the peak was first reached
    ramp_per_s: float | None  # sessions opened per second over the ramp
    failures: dict[str, int] = field(default_factory=dict)  # by taxonomy id
    generator_kb_per_session: float | None = None  # memory growth over open sessions
    generator_peak_kb: float | None = None  # all generator processes at the peak
    target_kb_per_session: float | None = None
    target_peak_kb: float | None = None


def capacity_rows(run: Any) -> Run:
    """What the connection analysis reads, in pandas whatever the run's size: for a run
    queried out of core (``open_run``), its connects, acks, disconnects and every failed
    row, but not the successful heartbeats, which are nearly all rows of a long hold (a
    ping per session every 25 s: 14 million an hour at 100,000 sessions). A run loaded
    with ``load_run`` is returned as it is."""
    from wsload.analysis.table_run import is_table_run

    if not is_table_run(run):
        return run
    samples = run.df(
        "SELECT node, session, ts, t_s, name, ms AS latency_ms, ok, failure FROM m "
        "WHERE name IN ('connect', 'auth', 'session:disconnect') "
        "OR (failure IS NOT NULL AND failure <> '') ORDER BY ts, arm, sub"
    )
    samples["ok"] = samples["ok"].astype(bool)
    empty = pd.DataFrame()
    return Run(
        path=run.path,
        meta=run.meta,
        started=run.started,
        samples=samples,
        turns=empty,
        sessions=empty,
        health=run.health,
        steps=run.steps,
        timeline=run.timeline,
        stages=list(run.stages),
    )


def is_connection_run(run: Run) -> bool:
    """Whether the run recorded held sessions (``health:sessions`` rows)."""
    return bool(len(run.health)) and bool((run.health["metric"] == "sessions").any())


def open_sessions(run: Run) -> pd.DataFrame:
    """Every ack and disconnect in time order with the sessions open right after it:
    columns ``ts``, ``t_s``, ``delta`` (+1, -1) and ``open``."""
    s = run.samples
    acks = s.loc[(s["name"] == "auth") & s["ok"].astype(bool)]
    acked_at = acks["ts"] + acks["latency_ms"].fillna(0.0) / 1000.0  # connect start + auth
    connects = s.loc[s["name"] == "connect"]
    start_of = connects.set_index(["node", "session"])["latency_ms"] if len(connects) else None
    if start_of is not None:
        start_of = start_of[~start_of.index.duplicated(keep="last")]
    if start_of is not None and len(acks):
        connect_ms = pd.Series(
            start_of.reindex(pd.MultiIndex.from_frame(acks[["node", "session"]])).to_numpy(),
            index=acks.index,
        ).fillna(0.0)
        acked_at = acked_at + connect_ms / 1000.0
    drops = s.loc[s["name"] == "session:disconnect", "ts"]
    events = pd.DataFrame(
        {
            "ts": np.concatenate([acked_at.to_numpy(float), drops.to_numpy(float)]),
            "delta": np.concatenate([np.ones(len(acked_at)), -np.ones(len(drops))]),
        }
    ).sort_values("ts", kind="stable")
    events["open"] = events["delta"].cumsum().astype(int)
    events["t_s"] = events["ts"] - run.started
    return events.reset_index(drop=True)


def attempts_vs_open(run: Run) -> pd.DataFrame:
    """Connect and auth samples with the sessions open when each attempt started."""
    events = open_sessions(run)
    s = run.samples
    attempts = s.loc[s["name"].isin(["connect", "auth"]), ["ts", "name", "latency_ms", "ok"]]
    attempts = attempts.sort_values("ts")
    if events.empty:
        return attempts.assign(open=0)
    position = np.searchsorted(events["ts"].to_numpy(), attempts["ts"].to_numpy(), side="right")
    opened = np.concatenate([[0], events["open"].to_numpy()])[position]
    return attempts.assign(open=opened)


def memory_timeline(run: Run) -> pd.DataFrame:
    """Per run second: sessions and memory summed over generator processes, and the
    target's: columns ``t_s``, ``sessions``, ``memory_kb``, ``target_sessions``,
    ``target_memory_kb`` (NaN where not recorded)."""
    h = run.health
    wanted = ("sessions", "memory_kb", "target_sessions", "target_memory_kb")
    h = h.loc[h["metric"].isin(wanted)].copy()
    if h.empty:
        return pd.DataFrame(columns=["t_s", *wanted])
    h["second"] = np.floor(h["t_s"]).astype(int)
    last = h.groupby(["metric", "node", "second"])["value"].last().reset_index()
    seconds = pd.RangeIndex(int(last["second"].min()), int(last["second"].max()) + 1)
    out = pd.DataFrame({"t_s": seconds.astype(float)}, index=seconds)
    for metric in wanted:
        rows = last.loc[last["metric"] == metric]
        if rows.empty:
            out[metric] = np.nan
            continue
        wide = rows.pivot(index="second", columns="node", values="value").reindex(seconds)
        out[metric] = wide.ffill().sum(axis=1, min_count=1)
    return out.reset_index(drop=True)


def _kb_per_session(frame: pd.DataFrame, sessions: str, memory: str) -> float | None:
    """Memory growth per session: the slope of memory over sessions held."""
    rows = frame[[sessions, memory]].dropna()
    if len(rows) < 3 or rows[sessions].max() - rows[sessions].min() < 10:
        return None
    slope = np.polyfit(rows[sessions].to_numpy(float), rows[memory].to_numpy(float), 1)[0]
    return float(slope)


def connection_capacity(run: Run) -> ConnectionCapacity:
    """Peak and cleanly held sessions, ramp time and rate, failures, memory per session."""
    events = open_sessions(run)
    s = run.samples
    failed = s.loc[s["failure"].notna() & (s["failure"] != "")]
    failures = {str(k): int(v) for k, v in failed["failure"].value_counts().items()}
    spoiling = failed.loc[failed["name"].isin(CLEAN_NAMES)]
    first_failure = float(spoiling["ts"].min()) if len(spoiling) else None
    peak = int(events["open"].max()) if len(events) else 0
    if first_failure is None:
        clean = peak
    else:
        before = events.loc[events["ts"] < first_failure, "open"]
        clean = int(before.max()) if len(before) else 0
    ramp_s = ramp_rate = None
    connects = s.loc[s["name"] == "connect", "ts"]
    if peak > 0 and len(connects):
        reached = float(events.loc[events["open"] >= peak, "ts"].iloc[0])
        ramp_s = max(1e-3, reached - float(connects.min()))
        ramp_rate = peak / ramp_s
    memory = memory_timeline(run)
    gen_slope = tgt_slope = gen_peak = tgt_peak = None
    if len(memory):
        gen_slope = _kb_per_session(memory, "sessions", "memory_kb")
        tgt_slope = _kb_per_session(memory, "target_sessions", "target_memory_kb")
        gen_peak = _at_peak(memory, "sessions", "memory_kb")
        tgt_peak = _at_peak(memory, "target_sessions", "target_memory_kb")
    return ConnectionCapacity(
        peak_sessions=peak,
        held_cleanly=clean,
        first_failure_s=None if first_failure is None else first_failure - run.started,
        ramp_s=ramp_s,
        ramp_per_s=ramp_rate,
        failures=failures,
        generator_kb_per_session=gen_slope,
        generator_peak_kb=gen_peak,
        target_kb_per_session=tgt_slope,
        target_peak_kb=tgt_peak,
    )


def _at_peak(frame: pd.DataFrame, sessions: str, memory: str) -> float | None:
    rows = frame[[sessions, memory]].dropna()
    if rows.empty:
        return None
    value = rows.loc[rows[sessions].idxmax(), memory]
    return None if isinstance(value, float) and math.isnan(value) else float(value)
