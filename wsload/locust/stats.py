"""wsload's samples into Locust's statistics, a batch at a time, exactly as Locust counts.

Logged one by one, Locust's per-entry bookkeeping (clock, cache, min, max, and all of it
again for the total) runs a dozen times per agent turn. Batched, it runs once per entry
per batch, and every sample still lands in the clock second it was taken in. A batch's
turns are taken apart a column at a time (every TTFE, every gap, ... in one pass each) and
each name's values are summed and bucketed at once with numpy (``figures_of``): about
2 µs of CPU per turn instead of 5.6 sample by sample.
``tests/unit/test_locust_contract.py`` holds both to Locust's own ``log_request``.
"""

from __future__ import annotations

import time
from collections import Counter
from itertools import chain
from operator import attrgetter
from typing import Any

import gevent
from locust import stats as locust_stats

from wsload.run.records import Record, TurnRecord

REQUEST_TYPE = "WS"
# Locust's own bucketing, which ``figures_of`` reproduces with numpy on many values
_LOCUST_BUCKET = locust_stats.bucket_response_time
VECTOR_MIN = 64  # values of one name in one batch from which numpy pays off
TAKE_APART_S = 0.05  # how long a record waits to be taken apart into its samples
_RESULT = attrgetter("result")
_TTFE = attrgetter("ttfe_ms")
_FIRSTS = attrgetter("first_ms")
_GAPS = attrgetter("gaps_ms")
_SPANS = attrgetter("spans_ms")
_SENT = attrgetter("sent_bytes")
_INTENDED = attrgetter("intended_ms")
_E2E = attrgetter("e2e_ms")  # TurnRecord.e2e_ms: the e2e, else the elapsed time
_FAILURES = attrgetter("failures")


class Failure(Exception):
    """A failed sample; its repr is the taxonomy id so Locust groups failures by it."""

    def __init__(self, failure: str, detail: str = "") -> None:
        super().__init__(failure)
        self.failure = failure
        self.detail = detail

    def __repr__(self) -> str:
        return self.failure

    __str__ = __repr__


def log_samples(
    stats: Any,
    method: str,
    by_name: dict[str, list[float]],
    lengths: dict[str, int],
    now: float | None = None,
) -> None:
    """Log samples into Locust's stats exactly as ``log_request`` would, one per value.

    ``StatsEntry.log`` reads the clock and makes half a dozen calls per sample, for the
    entry and again for the total; this reads the clock once, takes each name's values
    apart once (``figures_of``) and adds the figures to its entry and to the total.
    ``now`` is when the samples were taken (default: now).
    """
    if now is None:
        now = time.time()
    second = int(now)
    bucket = locust_stats.bucket_response_time  # looked up each time: Locust lets users swap it
    entries = stats.entries
    total_buckets: Counter[int] = Counter()
    count = length_total = 0
    total = 0.0
    low: float | None = None
    high = 0.0
    for name, values in by_name.items():
        if not values:
            continue
        length = lengths.get(name, 0)
        figures = figures_of(values, bucket)  # each value bucketed once, for both entries
        _log_figures(entries[(name, method)], figures, length, now, second)
        count += figures[0]
        total += figures[1]
        low = figures[2] if low is None else min(low, figures[2])
        high = max(high, figures[3])
        total_buckets.update(figures[4])
        length_total += length
    if count:
        figures = (count, total, low, high, total_buckets)
        _log_figures(stats.total, figures, length_total, now, second)  # type: ignore[arg-type]


# (count, sum, min, max, count per bucket) of one name's values in one batch
Figures = tuple[int, float, float, float, Counter[int]]


def figures_of(values: list[float], bucket: Any = None) -> Figures:
    """What Locust's stats keep of ``values``: their count, sum, min, max and how many
    fall in each of Locust's response-time buckets.

    Locust rounds a time to about two significant digits (``bucket_response_time``: Python's
    ``round``, half to even, of the exact value, to 1, 10, 100 or 1000 ms by magnitude).
    Called once per value that is a dozen function calls per turn; on many values numpy
    does the same rounding at once, and the rare value whose scaled form sits within a
    rounding error of a tie is bucketed by Locust's own function, so every count is exact.
    A bucketing a user swapped in is always called as is.
    """
    if bucket is None:
        bucket = locust_stats.bucket_response_time
    if len(values) < VECTOR_MIN:
        return len(values), sum(values), min(values), max(values), Counter(map(bucket, values))
    import numpy as np  # once samples flow: importing the load shapes must stay light

    times = np.array(values, dtype=np.float64)
    figures = len(values), float(times.sum()), float(times.min()), float(times.max())
    if bucket is not _LOCUST_BUCKET:
        return *figures, Counter(map(bucket, values))
    scale = np.where(
        times < 100, 1.0, np.where(times < 1000, 10.0, np.where(times < 10000, 100.0, 1000.0))
    )
    scaled = times / scale
    keys = (np.rint(scaled) * scale).astype(np.int64)
    scaled -= np.floor(scaled)
    tie = np.abs(scaled - 0.5) < 1e-6
    if tie.any():  # exact halves (and near ones the division may have moved): Locust's way
        for i in np.flatnonzero(tie).tolist():
            keys[i] = bucket(values[i])
    found, counts = np.unique(keys, return_counts=True)
    return *figures, Counter(dict(zip(found.tolist(), counts.tolist(), strict=True)))


def _log_figures(entry: Any, figures: Figures, length: int, now: float, second: int) -> None:
    if (
        entry.use_response_times_cache
        and entry.last_request_timestamp
        and second > int(entry.last_request_timestamp)
    ):
        entry._cache_response_times(second - 1)
    count, total, low, high, buckets = figures
    entry.num_requests += count
    entry.num_reqs_per_sec[second] += count
    entry.last_request_timestamp = now
    entry.total_response_time += total
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


class StatsBatch:
    """Records waiting to be logged into Locust's stats; a batch never spans two seconds.

    Adding a record is one list append (this runs for every turn of every user). Every
    ``TAKE_APART_S`` the pending records are taken apart into values by stats name, so no
    record outlives about that: thousands of records a second kept longer would be walked
    by the garbage collector again and again, and promoted to be walked by its full
    passes. The values are logged when the second changes, by ``flush_forever`` at least
    every quarter second, before a worker's stats report or a reset, and when the test
    stops, so nothing that reads Locust's stats sees a sample late by more than that
    quarter second.
    """

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.pending: list[Record] = []
        self.second = 0
        self.at = 0.0  # when the last pending record was added
        self._stat_names: dict[str, str] = {}  # event or span name -> "turn:<name>"
        # the samples taken apart and not yet logged: values and bytes by name, failures
        self._by_name: dict[str, list[float]] = {}
        self._lengths: dict[str, int] = {}
        self._errors: list[tuple[str, Failure]] = []

    def add(self, record: Record) -> None:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.flush()
            self.second = second
        self.at = now
        self.pending.append(record)

    def take_apart(self) -> None:
        """The pending records' samples into the values waiting to be logged."""
        if not self.pending:
            return
        records, self.pending = self.pending, []
        by_name, errors = self._by_name, self._errors
        turns = [r for r in records if type(r) is TurnRecord]
        if turns:
            self._put_turns(by_name, self._lengths, errors, turns)
        if len(turns) < len(records):
            for record in records:
                if type(record) is TurnRecord:
                    continue
                for sample in record.samples():
                    _put(by_name, sample.name, sample.ms)
                    if sample.failure is not None:
                        errors.append((sample.name, Failure(sample.failure, sample.detail)))

    def flush(self) -> None:
        """Log the pending samples into Locust's stats, as taken at the last one's time."""
        self.take_apart()
        if not self._by_name and not self._errors:
            return
        by_name, lengths, errors = self._by_name, self._lengths, self._errors
        self._by_name, self._lengths, self._errors = {}, {}, []
        log_samples(self.stats, REQUEST_TYPE, by_name, lengths, now=self.at)
        if errors:
            log_errors(self.stats, REQUEST_TYPE, errors, now=self.at)

    def _put_turns(
        self,
        by_name: dict[str, list[float]],
        lengths: dict[str, int],
        errors: list[tuple[str, Failure]],
        turns: list[TurnRecord],
    ) -> None:
        """The samples of ``turns`` by stats name, a column at a time (each column is read
        off all the turns in one C-level pass instead of a call per sample)."""
        names = self._stat_names
        results = list(map(_RESULT, turns))
        ttfe = [ms for ms in map(_TTFE, results) if ms is not None]
        if ttfe:
            _extend(by_name, "turn:ttfe", ttfe)
        firsts = list(map(_FIRSTS, results))
        for event in dict.fromkeys(chain.from_iterable(firsts)):
            values = [first[event] for first in firsts if event in first]
            _extend(by_name, names.get(event) or self._stat_name(event), values)
        gaps = list(chain.from_iterable(map(_GAPS, results)))
        if gaps:
            _extend(by_name, "turn:gap", gaps)
        spans = list(chain.from_iterable(map(_SPANS, results)))
        for span in dict.fromkeys([name for name, _ in spans]):
            values = [ms for name, ms in spans if name == span]
            _extend(by_name, names.get(span) or self._stat_name(span), values)
        for record in turns:
            if record.ttft_ms is not None:
                _put_stream(by_name, record)
        intended = [ms for ms in map(_INTENDED, turns) if ms is not None]
        if intended:
            _extend(by_name, "turn:e2e_intended", intended)
        _extend(by_name, "turn:e2e", list(map(_E2E, turns)))
        lengths["turn:e2e"] = lengths.get("turn:e2e", 0) + sum(map(_SENT, turns))
        if any(map(_FAILURES, results)):
            for result in results:
                if result.failures:
                    errors.append(("turn:e2e", Failure(result.failure)))  # type: ignore[arg-type]

    def _stat_name(self, name: str) -> str:
        stat = self._stat_names[name] = f"turn:{name}"
        return stat

    def flush_forever(self, interval_s: float = 0.25) -> None:
        """Take the records apart every ``TAKE_APART_S``, log them every ``interval_s``."""
        takes = max(1, round(interval_s / TAKE_APART_S))
        while True:
            for _ in range(takes - 1):
                gevent.sleep(TAKE_APART_S)
                self.take_apart()
            gevent.sleep(TAKE_APART_S)
            self.flush()


def _put(by_name: dict[str, list[float]], name: str, ms: float) -> None:
    values = by_name.get(name)
    if values is None:
        by_name[name] = [ms]
    else:
        values.append(ms)


def _put_stream(by_name: dict[str, list[float]], record: TurnRecord) -> None:
    """A streamed answer's samples: ``turn:ttft``, every ``turn:itl``, ``turn:tpot``,
    ``turn:output_tokens`` and ``turn:tokens_per_s`` (the last two a count and a rate)."""
    _put(by_name, "turn:ttft", record.ttft_ms)  # type: ignore[arg-type]
    if record.itl_ms:
        _extend(by_name, "turn:itl", record.itl_ms)
    if record.tpot_ms is not None:
        _put(by_name, "turn:tpot", record.tpot_ms)
    _put(by_name, "turn:output_tokens", float(record.output_tokens or 0))
    if record.tokens_per_s is not None:
        _put(by_name, "turn:tokens_per_s", record.tokens_per_s)


def _extend(by_name: dict[str, list[float]], name: str, more: list[float]) -> None:
    values = by_name.get(name)
    if values is None:
        by_name[name] = list(more)
    else:
        values.extend(more)
