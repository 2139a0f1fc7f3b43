"""wsload's samples into Locust's statistics, a batch at a time, exactly as Locust counts.

Logged one by one, Locust's per-entry bookkeeping (clock, cache, min, max, and all of it
again for the total) runs a dozen times per agent turn. Batched, it runs once per entry
per batch, and every sample still lands in the clock second it was taken in.
``tests/unit/test_locust_contract.py`` holds both to Locust's own ``log_request``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import gevent
from locust import stats as locust_stats

from wsload.run.records import Record, TurnRecord

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


def log_samples(
    stats: Any,
    method: str,
    by_name: dict[str, list[float]],
    lengths: dict[str, int],
    now: float | None = None,
) -> None:
    """Log samples into Locust's stats exactly as ``log_request`` would, one per value.

    ``StatsEntry.log`` reads the clock and makes half a dozen calls per sample, for the
    entry and again for the total; this reads the clock once and updates each entry, and
    the total, in one pass. ``now`` is when the samples were taken (default: now).
    """
    if now is None:
        now = time.time()
    second = int(now)
    bucket = locust_stats.bucket_response_time  # looked up each time: Locust lets users swap it
    entries = stats.entries
    everything: list[float] = []
    total_buckets: Counter[int] = Counter()
    length_total = 0
    for name, values in by_name.items():
        length = lengths.get(name, 0)
        buckets = Counter(map(bucket, values))  # each value bucketed once, for both entries
        _log_values(entries[(name, method)], values, buckets, length, now, second)
        everything.extend(values)
        total_buckets.update(buckets)
        length_total += length
    _log_values(stats.total, everything, total_buckets, length_total, now, second)


def _log_values(
    entry: Any,
    values: list[float],
    buckets: Counter[int],
    length: int,
    now: float,
    second: int,
) -> None:
    if (
        entry.use_response_times_cache
        and entry.last_request_timestamp
        and second > int(entry.last_request_timestamp)
    ):
        entry._cache_response_times(second - 1)
    count = len(values)
    entry.num_requests += count
    entry.num_reqs_per_sec[second] += count
    entry.last_request_timestamp = now
    entry.total_response_time += sum(values)
    low, high = min(values), max(values)
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

    Adding a record is one list append (this runs for every turn of every user); the
    samples are taken apart when the batch is logged: when the second changes, by
    ``flush_forever`` at least every quarter second, before a worker's stats report or a
    reset, and when the test stops, so nothing that reads Locust's stats sees a sample
    late by more than that quarter second.
    """

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.pending: list[Record] = []
        self.second = 0
        self.at = 0.0  # when the last pending record was added
        self._stat_names: dict[str, str] = {}  # event or span name -> "turn:<name>"

    def add(self, record: Record) -> None:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.flush()
            self.second = second
        self.at = now
        self.pending.append(record)

    def flush(self) -> None:
        """Log the pending records into Locust's stats, as taken at the last one's time."""
        if not self.pending:
            return
        records, self.pending = self.pending, []
        by_name: dict[str, list[float]] = {}
        lengths: dict[str, int] = {}
        errors: list[tuple[str, Failure]] = []
        names = self._stat_names
        for record in records:
            if type(record) is TurnRecord:
                result = record.result
                if result.ttfe_ms is not None:
                    _put(by_name, "turn:ttfe", result.ttfe_ms)
                for name, ms in result.first_ms.items():
                    _put(by_name, names.get(name) or self._stat_name(name), ms)
                if result.gaps_ms:
                    _extend(by_name, "turn:gap", result.gaps_ms)
                for span, ms in result.spans_ms:
                    _put(by_name, names.get(span) or self._stat_name(span), ms)
                if record.ttft_ms is not None:
                    _put_stream(by_name, record)
                if record.intended_ms is not None:
                    _put(by_name, "turn:e2e_intended", record.intended_ms)
                _put(by_name, "turn:e2e", record.e2e_ms)
                lengths["turn:e2e"] = lengths.get("turn:e2e", 0) + record.sent_bytes
                if result.failure is not None:
                    errors.append(("turn:e2e", Failure(result.failure)))
                continue
            for sample in record.samples():
                _put(by_name, sample.name, sample.ms)
                if sample.failure is not None:
                    errors.append((sample.name, Failure(sample.failure, sample.detail)))
        log_samples(self.stats, REQUEST_TYPE, by_name, lengths, now=self.at)
        if errors:
            log_errors(self.stats, REQUEST_TYPE, errors, now=self.at)

    def _stat_name(self, name: str) -> str:
        stat = self._stat_names[name] = f"turn:{name}"
        return stat

    def flush_forever(self, interval_s: float = 0.25) -> None:
        while True:
            gevent.sleep(interval_s)
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
