"""Exact gate evaluation over the raw samples of a run.

Every statistic is computed from the run's measurements (the long view, never from Locust's rounded
histogram), so the live gate at the end of a run and ``wsload gate`` on the same folder give
the same verdicts. Times are over the successful samples of a name (a refused connect has
no meaningful latency); failures are what the counts and failure rates are for.

A check over samples that never happened is "not measured", never a pass: zero accepted
probes out of zero probes proves nothing. It fails the gate when the user asked for it, and
is shown (without failing) for the checks wsload adds by itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pandas as pd

from wsload import taxonomy
from wsload.gate.config import GateConfig
from wsload.gate.threshold_model import (
    CONFORMANCE,
    GOODPUT,
    PROBE,
    TURN,
    TURN_NAME,
    Metric,
    Threshold,
    failure_stage,
    scope_rule,
)
from wsload.run import digest
from wsload.run.meta import crash_notice, read_run_meta
from wsload.run.summary import last_sample_end, load_samples
from wsload.run.tables import has_tables, require_run_folder

PASS = "pass"
FAIL = "fail"
NOT_MEASURED = "not measured"
EXIT_PASSED = 0
EXIT_FAILED = 1
_TO_BASE = {"s": Decimal(1000), "%": Decimal("0.01")}
_NEEDED = ("ts", "name", "ms", "ok", "failure", "node", "session", "turn")


def format_number(value: float, digits: int = 4) -> str:
    """``digits`` significant figures, whole numbers from there up, never an exponent."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:.0f}"
    text = f"{value:.{digits}g}"
    return format(Decimal(text), "f") if "e" in text else text


@dataclass(frozen=True)
class GateRow:
    """One threshold's outcome; ``observed`` is in the threshold's own unit."""

    threshold: Threshold
    observed: float | None
    verdict: str  # pass | fail | not measured
    detail: str = ""

    @property
    def failed(self) -> bool:
        """Fails the gate: a broken threshold, or one the user asked for that measured nothing."""
        if self.verdict == FAIL:
            return True
        threshold = self.threshold
        return self.verdict == NOT_MEASURED and not (threshold.optional or threshold.implicit)

    @property
    def title(self) -> str:
        """How outputs name the check: its label (``security: isolation``) and its text."""
        label = self.threshold.label
        return f"{label}: {self.threshold}" if label else str(self.threshold)

    @property
    def observed_text(self) -> str:
        """The observation for a reader, with enough figures to show why it failed.

        ``5 s`` next to ``< 5s`` and FAIL reads as a bug; the value is then shown with
        more figures until it reads like its verdict (``5.0004 s``).
        """
        if self.observed is None:
            return "-"
        threshold = self.threshold
        if threshold.metric.kind == "count":
            return str(round(self.observed))
        space = " " if threshold.unit in ("ms", "s") else ""
        for digits in (4, 7, 10, 17):
            text = format_number(self.observed, digits)
            shown = float(Decimal(text) * _TO_BASE.get(threshold.unit, Decimal(1)))
            if threshold.holds(shown) == (self.verdict == PASS):
                break
        return f"{text}{space}{threshold.unit}"


@dataclass(frozen=True)
class GateResult:
    """The gate over one run: a row per threshold, the window it looked at, the verdict."""

    rows: tuple[GateRow, ...]
    warmup_s: float = 0.0
    window_start: float | None = None
    window_end: float | None = None
    samples: int = 0  # rows inside the window
    goodput_limits_ms: Mapping[str, float] = field(default_factory=dict)
    aborted: str | None = None  # why the live run stopped early, set by the Locust glue
    crashed: str | None = None  # the run did not stop cleanly: ``runmeta.crash_notice``

    @property
    def passed(self) -> bool:
        return not any(row.failed for row in self.rows)

    @property
    def failed_rows(self) -> tuple[GateRow, ...]:
        return tuple(row for row in self.rows if row.failed)

    @property
    def unmeasured_rows(self) -> tuple[GateRow, ...]:
        return tuple(row for row in self.rows if row.verdict == NOT_MEASURED)

    @property
    def exit_code(self) -> int:
        """0 when every threshold holds, 1 when one does not (2 is a configuration error)."""
        return EXIT_PASSED if self.passed else EXIT_FAILED

    @property
    def duration_s(self) -> float | None:
        if self.window_start is None or self.window_end is None:
            return None
        duration = self.window_end - self.window_start
        return duration if duration > 0 else None


@dataclass
class _Observation:
    base: float | Fraction | int | None  # in base units: ms, fraction, /s, count
    detail: str


class _Frame:
    """The window's measurements as a digest (``wsload.run.digest``: counts per name, ok,
    failure and value), with the masks thresholds share; a mask is over digest rows and
    ``count`` weighs it. ``goodput`` is asked of whoever holds the turns."""

    def __init__(
        self,
        counted: pd.DataFrame,
        duration_s: float | None,
        before: Mapping[str, int],
        goodput: Callable[[Mapping[str, float]], tuple[int, int]],
    ) -> None:
        counted = counted.reset_index(drop=True)
        self.counted = counted
        self.name = counted["name"].astype(str)
        self.ok = counted["ok"].astype(bool)
        self.failure = counted["failure"].astype("string").fillna("")
        self.n = counted["n"].to_numpy(dtype="int64")
        self.duration_s = duration_s
        self.before = before  # samples per name in the whole run, warm-up included
        self._goodput_of = goodput
        self._goodput: tuple[int, int] | None = None

    def count(self, mask: pd.Series) -> int:
        """Measurements in the digest rows ``mask`` picks."""
        return int(self.n[mask.to_numpy(dtype=bool)].sum())

    def stat(self, mask: pd.Series, which: str | float) -> tuple[float, int] | None:
        """(a percentile or min/max/mean of the values ``mask`` picks, how many), or None."""
        values, counts = digest.successes(self.counted.loc[mask.to_numpy(dtype=bool)])
        if len(values) == 0:
            return None
        return digest.stat(values, counts, which), int(counts.sum())

    def scope(self, scope: str | None) -> pd.Series:
        exact, prefix = scope_rule(scope)
        if exact is not None:
            return self.name == exact
        if prefix is not None:
            return self.name.str.startswith(prefix)
        return pd.Series(True, index=self.name.index)

    def missing(self, scope: str | None) -> str:
        """Why a scope has no samples: warm-up, a misspelt name, or the stage never ran."""
        exact, _ = scope_rule(scope)
        if scope == PROBE:
            return "no probe:* samples in the window: no auth probe ran (--probe-users 0?)"
        if scope == CONFORMANCE:
            return "no conformance:* samples in the window: no handshake probe ran"
        if scope == TURN:
            return "no turn in the window"
        if exact is None:
            return "no samples in the window"
        if self.before.get(exact):
            return f"all {self.before[exact]} {exact!r} samples fall in the warm-up"
        close = difflib.get_close_matches(exact, list(self.before), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"no samples named {exact!r}{hint}"

    def goodput(self, limits_ms: Mapping[str, float]) -> tuple[int, int]:
        """(good turns, turns): a turn is good when ok and every limited row met its limit."""
        if self._goodput is None:
            self._goodput = self._goodput_of(limits_ms)
        return self._goodput


def goodput_of_samples(samples: pd.DataFrame, limits_ms: Mapping[str, float]) -> tuple[int, int]:
    """``_Frame.goodput`` over long-view rows: turns keyed by (node, session, turn)."""
    name = samples["name"].astype(str).reset_index(drop=True)
    ok = samples["ok"].astype(bool).reset_index(drop=True)
    ms = samples["ms"].astype(float).reset_index(drop=True)
    keys = samples[["node", "session", "turn"]].reset_index(drop=True)
    is_turn = name == TURN_NAME
    limit = name.map(dict(limits_ms)).astype(float)
    bad = limit.notna() & (~ok | (ms > limit))
    turns = keys[is_turn]
    bad_keys = pd.MultiIndex.from_frame(keys[bad])
    good = ok[is_turn].to_numpy() & ~pd.MultiIndex.from_frame(turns).isin(bad_keys)
    return int(good.sum()), int(is_turn.sum())


def _observe(frame: _Frame, threshold: Threshold, limits_ms: Mapping[str, float]) -> _Observation:
    metric = threshold.metric
    kind = metric.kind
    if metric.scope == GOODPUT:
        good, turns = frame.goodput(limits_ms)
        if metric.stat == "count":
            return _Observation(good, f"of {turns} turns")
        if metric.stat == "rate":
            return _rate(frame, good, "good turns")
        if turns == 0:
            return _Observation(None, "no turns in the window")
        return _Observation(Fraction(good, turns), f"{good} of {turns} turns good")

    scope = frame.scope(metric.rate_scope if kind == "share" else metric.scope)
    in_scope = frame.count(scope)
    where = _scope_words(metric.rate_scope if kind == "share" else metric.scope)
    if metric.failure is not None:
        reached = _reached(frame, metric)
        if not frame.count(reached):
            return _Observation(None, _unreached(frame, metric))
        hits = frame.count(reached & (frame.failure == metric.failure))
        if kind == "count":
            if metric.failure == taxonomy.IDENTITY_MISMATCH:
                return _Observation(hits, f"of {frame.count(reached)} acked sessions")
            return _Observation(hits, f"of {frame.count(reached)} {where}samples")
        if kind == "rate":
            return _rate(frame, hits, f"{metric.failure} samples")
        if in_scope == 0:
            return _Observation(None, frame.missing(metric.rate_scope))
        return _Observation(Fraction(hits, in_scope), f"{hits} of {in_scope} {where}samples")

    missing = frame.missing(metric.scope) if in_scope == 0 and metric.scope is not None else ""
    if kind == "count":
        failed = frame.count(scope & ~frame.ok)
        if metric.stat == "failures":
            if in_scope == 0:
                return _Observation(None, missing or "no samples in the window")
            return _Observation(failed, f"of {in_scope} samples")
        return _Observation(in_scope, missing or f"{failed} failed")
    if kind == "share":
        if in_scope == 0:
            return _Observation(None, missing or "no samples in the window")
        failed = frame.count(scope & ~frame.ok)
        return _Observation(Fraction(failed, in_scope), f"{failed} of {in_scope} failed")
    if kind == "rate":
        return _rate(frame, frame.count(scope & frame.ok), "successful samples")
    which = metric.percentile if metric.percentile is not None else metric.stat
    seen = frame.stat(scope & frame.ok, which)
    if seen is None:
        if missing:
            return _Observation(None, missing)
        return _Observation(None, f"no successful samples ({in_scope} failed)")
    observed, values = seen
    return _Observation(observed, f"{values} successful samples")


def _reached(frame: _Frame, metric: Metric) -> pd.Series:
    """The samples a failure id could have shown up in: those that reached its check.

    Without a stats name that is the id's stage (a probe id, the probes; a connect id, the
    connects) plus every sample that failed with it; an identity is only checked on an ack.
    """
    failure = metric.failure
    if metric.scope is not None:
        reached = frame.scope(metric.scope)
    else:
        stage = failure_stage(failure or "")
        reached = frame.scope(stage) | (frame.failure == failure) if stage else frame.scope(None)
    if failure == taxonomy.IDENTITY_MISMATCH:
        reached = reached & (frame.ok | (frame.failure == failure))
    return reached


def _unreached(frame: _Frame, metric: Metric) -> str:
    """Why a failure id's check measured nothing."""
    if metric.failure == taxonomy.IDENTITY_MISMATCH and metric.scope in (None, "auth"):
        return "no session was acked, so no identity was checked"
    scope = metric.scope if metric.scope is not None else failure_stage(metric.failure or "")
    return frame.missing(scope)


def _scope_words(scope: str | None) -> str:
    if scope is None:
        return ""
    if scope == TURN:
        return "turn "
    return f"{scope} "


def _rate(frame: _Frame, hits: int, what: str) -> _Observation:
    if frame.duration_s is None:
        return _Observation(None, "the run window is empty")
    return _Observation(hits / frame.duration_s, f"{hits} {what} in {frame.duration_s:.1f} s")


def _in_unit(threshold: Threshold, base: float | Fraction | int) -> float:
    """A base-unit observation in the threshold's own unit (what a reader compares)."""
    unit = threshold.unit
    if unit == "s":
        return float(base) / 1000.0
    if unit == "%":
        return float(base * 100)
    return float(base)


def evaluate(
    samples: pd.DataFrame,
    config: GateConfig,
    *,
    stopped: float | None = None,
) -> GateResult:
    """Evaluate ``config``'s thresholds (security defaults included) over raw samples.

    The window starts at the first sample plus the warm-up (earlier samples are ignored)
    and ends at ``stopped`` (``run.json``), or at the end of the last sample when the run
    did not stop cleanly; rates are per second of that window.
    """
    missing = [column for column in _NEEDED if column not in samples.columns]
    if missing:  # a hand-made frame; load_samples always has every column
        samples = samples.assign(**dict.fromkeys(missing, pd.NA))
    before = samples["name"].astype(str).value_counts().to_dict()
    window_start = window_end = None
    if len(samples):
        ts = samples["ts"].astype(float)
        window_start = float(ts.min()) + config.warmup_s
        window_end = last_sample_end(samples)
        if window_end is None:
            window_end = float(ts.max())
        if stopped is not None and stopped > window_start:
            window_end = float(stopped)
        samples = samples.loc[ts >= window_start]
    duration = None
    if window_start is not None and window_end is not None and window_end > window_start:
        duration = window_end - window_start
    frame = _Frame(
        digest.digest_of(samples),
        duration,
        before,
        lambda limits_ms: goodput_of_samples(samples, limits_ms),
    )
    return _evaluate_frame(frame, config, window_start, window_end)


def _evaluate_frame(
    frame: _Frame, config: GateConfig, window_start: float | None, window_end: float | None
) -> GateResult:
    """The thresholds over a window's digest (pandas- or DuckDB-made alike)."""
    limits = dict(config.goodput_limits_ms)
    rows = []
    for threshold in config.effective():
        seen = _observe(frame, threshold, limits)
        if seen.base is None:
            rows.append(GateRow(threshold, None, NOT_MEASURED, seen.detail))
            continue
        verdict = PASS if threshold.holds(seen.base) else FAIL
        rows.append(GateRow(threshold, _in_unit(threshold, seen.base), verdict, seen.detail))
    return GateResult(
        rows=tuple(rows),
        warmup_s=config.warmup_s,
        window_start=window_start,
        window_end=window_end,
        samples=int(frame.n.sum()),
        goodput_limits_ms=limits,
    )


def evaluate_run(folder: str | Path, config: GateConfig) -> GateResult:
    """The gate over a run folder; the same call serves the live and the offline gate."""
    folder = require_run_folder(Path(folder))
    meta = read_run_meta(folder)
    stopped = meta.get("stopped")
    stopped = float(stopped) if isinstance(stopped, int | float) else None
    if has_tables(folder):
        from wsload.gate.tables import evaluate_tables

        result = evaluate_tables(folder, config, stopped=stopped)
        end = result.window_end if stopped is None else None
        notice = crash_notice(meta, end if result.window_start is not None else None)
    else:
        samples = load_samples(folder, _NEEDED)
        result = evaluate(samples, config, stopped=stopped)
        notice = crash_notice(meta, last_sample_end(samples))
    return dataclasses.replace(result, crashed=notice) if notice else result
