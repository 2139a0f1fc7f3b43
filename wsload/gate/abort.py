"""Abort on fail: notice, sample by sample, that an ``abort`` threshold can no longer hold.

Fed every row as it is recorded, so it does a few comparisons per row and nothing else.
Only thresholds a running load can break for good take ``abort`` (the grammar refuses the
others): counts with ``<``, ``<=``, ``==`` (counts only grow), ``max`` with ``<``, ``<=`` (a
max only rises) and ``min`` with ``>``, ``>=``. The end-of-run gate over the same rows then
fails the same threshold, so the abort and the final verdict agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wsload.gate.threshold_model import Threshold, scope_rule


@dataclass(frozen=True)
class AbortReason:
    """The threshold that broke and what broke it, ready to print."""

    threshold: Threshold
    observed: str  # e.g. "1 sample" or "max 2310.125 ms"
    name: str  # the stats name of the row that broke it
    failure: str | None

    @property
    def message(self) -> str:
        return (
            f"gate abort: '{self.threshold}' can no longer be met "
            f"({self.observed}; last sample {self.name}"
            + (f" failed with {self.failure})" if self.failure else ")")
        )


class _Watch:
    """One abort threshold's matcher and running state."""

    __slots__ = ("exact", "failed_only", "failure", "mode", "n", "prefix", "threshold", "trip_at")

    def __init__(self, threshold: Threshold) -> None:
        metric = threshold.metric
        self.threshold = threshold
        self.exact, self.prefix = scope_rule(metric.scope)
        self.failure = metric.failure
        self.failed_only = metric.stat == "failures"
        self.mode = metric.stat if metric.stat in ("max", "min") else "count"
        self.n = 0
        # A count breaks when it reaches the first value the threshold refuses.
        limit = int(threshold.limit)
        self.trip_at = limit if threshold.op == "<" else limit + 1

    def matches(self, name: str, ok: bool, failure: str | None) -> bool:
        if self.exact is not None and name != self.exact:
            return False
        if self.prefix is not None and not name.startswith(self.prefix):
            return False
        if self.mode != "count":
            return ok  # times are over successful samples
        if self.failure is not None:
            return failure == self.failure
        return not (self.failed_only and ok)

    def feed(self, name: str, ok: bool, failure: str | None, ms: float) -> str | None:
        """What broke the threshold, or None; call only for matching rows."""
        if self.mode == "count":
            self.n += 1
            if self.n >= self.trip_at:
                return f"{self.n} sample{'s' if self.n != 1 else ''}"
            return None
        # The recorder writes ms with three decimals; judge what the gate will read.
        value = round(ms, 3)
        if self.threshold.holds(value):
            return None
        return f"{self.mode} {value:.3f} ms"


class AbortWatch:
    """Incremental abort check for a live run; ``observe`` every recorded row.

    With a warm-up, rows starting within ``warmup_s`` of the earliest row seen are ignored,
    as the final gate ignores them. Rows arrive roughly in order; a row older than the
    earliest seen moves the warm-up back, and rows held back as warm-up that now fall
    after it are counted then, so the abort never disagrees with the final gate.
    """

    def __init__(self, thresholds: Iterable[Threshold], *, warmup_s: float = 0.0) -> None:
        self._watches = [_Watch(t) for t in thresholds if t.abort]
        self.warmup_s = warmup_s
        self.tripped: AbortReason | None = None
        self._anchor: float | None = None
        self._held: list[tuple[float, str, bool, str | None, float]] = []

    @property
    def failures_only(self) -> bool:
        """Whether only failed rows can matter (no warm-up, every watch counts failures).

        Then a caller may skip successful rows, which are nearly all of them.
        """
        return self.warmup_s <= 0 and all(
            w.mode == "count" and (w.failure is not None or w.failed_only) for w in self._watches
        )

    @property
    def active(self) -> bool:
        """Whether observing still matters (abort thresholds given, none tripped yet)."""
        return bool(self._watches) and self.tripped is None

    def observe(
        self,
        name: str,
        ok: bool,
        failure: str | None,
        ms: float,
        ts: float | None = None,
    ) -> AbortReason | None:
        """Count one row; the reason the first time an abort threshold breaks, else None.

        ``ts`` (epoch seconds at the start of the measurement) is needed for the warm-up;
        without it a row is counted at once.
        """
        if self.tripped is not None or not self._watches:
            return None
        failure = failure or None
        if self.warmup_s > 0 and ts is not None:
            ts = round(ts, 6)  # as the recorder writes it, so the boundary matches the gate
            if self._anchor is None or ts < self._anchor:
                self._anchor = ts
                if self._held:
                    reason = self._release()
                    if reason is not None:
                        return reason
            if ts < self._anchor + self.warmup_s:
                if any(w.matches(name, ok, failure) for w in self._watches):
                    self._held.append((ts, name, ok, failure, ms))
                return None
        return self._count(name, ok, failure, ms)

    def _count(self, name: str, ok: bool, failure: str | None, ms: float) -> AbortReason | None:
        for watch in self._watches:
            if watch.matches(name, ok, failure):
                observed = watch.feed(name, ok, failure, ms)
                if observed is not None:
                    self.tripped = AbortReason(watch.threshold, observed, name, failure)
                    return self.tripped
        return None

    def _release(self) -> AbortReason | None:
        assert self._anchor is not None
        cutoff = self._anchor + self.warmup_s
        still = []
        reason = None
        for row in self._held:
            if row[0] >= cutoff and reason is None:
                reason = self._count(*row[1:])
            elif row[0] < cutoff:
                still.append(row)
        self._held = still
        return reason
