"""Records into cumulative metric series: counters, latency histograms and gauges.

Each generator process aggregates its own records once a second (``Tap``) into a
``Snapshot``: cumulative since the process started, plain data, cheap to copy, to ship to
a master and to add up over processes. Labels are bounded: failure taxonomy ids, stage,
probe, session event and request names, generator node; never a user, a subject, a
session id or anything from a token. Pure: no Locust, no sockets, no clock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from wsload import taxonomy
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

OK = "ok"  # the outcome label of a success

#: histogram bucket upper bounds in seconds: sub-millisecond token gaps up to a minute's turn
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
    0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0,
)  # fmt: skip
_BOUNDS_MS = [bound * 1000.0 for bound in LATENCY_BUCKETS_S]


@dataclass(frozen=True)
class Metric:
    """One metric: its Prometheus name (counters without ``_total``), its OpenTelemetry
    instrument name, kind, unit, help and label names."""

    name: str
    otel: str
    kind: str  # counter | histogram | gauge
    help: str
    labels: tuple[str, ...] = ()
    unit: str = "1"


TURNS_STARTED = Metric("wsload_turns_started", "wsload.turns.started", "counter",
                       "Agent turns sent (completed plus in flight)", unit="{turn}")  # fmt: skip
TURNS_COMPLETED = Metric("wsload_turns_completed", "wsload.turns.completed", "counter",
                         "Agent turns completed, failed ones included (the headline's turns)",
                         unit="{turn}")  # fmt: skip
TURNS_FAILED = Metric("wsload_turns_failed", "wsload.turns.failed", "counter",
                      "Completed agent turns that failed, by taxonomy id", ("failure",),
                      "{turn}")  # fmt: skip
TURN_STAGE = Metric("wsload_turn_stage_seconds", "wsload.turn.stage.duration", "histogram",
                    "Turn stage latency (ttfe, each event, gap, spans, e2e, ttft, itl)",
                    ("stage",), "s")  # fmt: skip
HANDSHAKE = Metric("wsload_handshake_seconds", "wsload.handshake.duration", "histogram",
                   "Connect (TCP to 101), its TLS part and auth (101 to ack) latency",
                   ("phase",), "s")  # fmt: skip
CONNECTS = Metric("wsload_connects", "wsload.connects", "counter",
                  "Connection attempts by outcome (ok or taxonomy id)", ("outcome",))  # fmt: skip
AUTH = Metric("wsload_auth", "wsload.auth", "counter",
              "Authentications after a 101 by outcome (ok or taxonomy id)",
              ("outcome",))  # fmt: skip
OPEN_SESSIONS = Metric("wsload_open_sessions", "wsload.sessions.open", "gauge",
                       "WebSocket sessions open now", unit="{session}")  # fmt: skip
PROBES = Metric("wsload_probes", "wsload.probes", "counter",
                "Security and conformance probes by probe and outcome",
                ("probe", "outcome"))  # fmt: skip
AUTH_NOT_ENFORCED = Metric("wsload_auth_not_enforced", "wsload.auth_not_enforced", "counter",
                           "Probes whose defective credential the server accepted",
                           ("probe",))  # fmt: skip
SESSION_EVENTS = Metric("wsload_session_events", "wsload.session.events", "counter",
                        "Session events (refresh, reconnect, disconnect, ping...) by outcome",
                        ("event", "outcome"))  # fmt: skip
HTTP_REQUESTS = Metric("wsload_http_requests", "wsload.http.requests", "counter",
                       "Logins, refreshes and tickets over HTTP by outcome",
                       ("name", "outcome"))  # fmt: skip
CPU = Metric("wsload_generator_cpu_percent", "wsload.generator.cpu", "gauge",
             "CPU share of one generator process", ("node",), "%")  # fmt: skip
LAG = Metric("wsload_event_loop_lag_seconds", "wsload.generator.event_loop_lag", "gauge",
             "Event-loop lag of one generator process (worst in the last second)",
             ("node",), "s")  # fmt: skip
OUTPUT_TOKENS = Metric("wsload_output_tokens", "wsload.output_tokens", "counter",
                       "Output tokens of streamed answers (the profile's tokenizer)",
                       unit="{token}")  # fmt: skip
USERS = Metric("wsload_users", "wsload.users", "gauge", "Running users of the whole run",
               unit="{user}")  # fmt: skip

METRICS: tuple[Metric, ...] = (
    TURNS_STARTED, TURNS_COMPLETED, TURNS_FAILED, TURN_STAGE, OUTPUT_TOKENS, HANDSHAKE,
    CONNECTS, AUTH, OPEN_SESSIONS, PROBES, AUTH_NOT_ENFORCED, SESSION_EVENTS, HTTP_REQUESTS,
    CPU, LAG, USERS,
)  # fmt: skip
BY_NAME = {metric.name: metric for metric in METRICS}

Key = tuple[str, tuple[str, ...]]  # (metric name, label values)
_COMPLETED: Key = (TURNS_COMPLETED.name, ())
_TOKENS: Key = (OUTPUT_TOKENS.name, ())
#: turn samples that are not milliseconds: a streamed answer's token count and token rate
NOT_LATENCY = frozenset({"turn:output_tokens", "turn:tokens_per_s"})


@dataclass
class Snapshot:
    """Cumulative series of one or more processes: plain data that adds up.

    A histogram is its bucket counts (one per bound, then +Inf, not cumulative) and its
    sum in milliseconds.
    """

    counters: dict[Key, float] = field(default_factory=dict)
    histograms: dict[Key, tuple[list[int], float]] = field(default_factory=dict)
    gauges: dict[Key, float] = field(default_factory=dict)

    def add(self, other: Snapshot) -> None:
        """Add ``other``'s series to these (gauges too: open sessions of all workers)."""
        for key, value in other.counters.items():
            self.counters[key] = self.counters.get(key, 0.0) + value
        for key, value in other.gauges.items():
            self.gauges[key] = self.gauges.get(key, 0.0) + value
        for key, (counts, total) in other.histograms.items():
            mine = self.histograms.get(key)
            if mine is None:
                self.histograms[key] = (list(counts), total)
            else:
                added = [a + b for a, b in zip(mine[0], counts, strict=True)]
                self.histograms[key] = (added, mine[1] + total)

    def to_wire(self) -> dict[str, Any]:
        """Lists of plain values, for a Locust message (msgpack)."""
        return {
            "c": [[name, list(labels), value] for (name, labels), value in self.counters.items()],
            "h": [
                [name, list(labels), counts, total]
                for (name, labels), (counts, total) in self.histograms.items()
            ],
            "g": [[name, list(labels), value] for (name, labels), value in self.gauges.items()],
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            {(n, tuple(labels)): float(v) for n, labels, v in data.get("c", ())},
            {
                (n, tuple(labels)): ([int(c) for c in counts], float(total))
                for n, labels, counts, total in data.get("h", ())
            },
            {(n, tuple(labels)): float(v) for n, labels, v in data.get("g", ())},
        )

    def value(self, name: str, *labels: str) -> float:
        """A counter's or gauge's value (0 when it never moved)."""
        key = (name, labels)
        return self.counters.get(key, self.gauges.get(key, 0.0))


def merged(snapshots: Iterable[Snapshot]) -> Snapshot:
    total = Snapshot()
    for snapshot in snapshots:
        total.add(snapshot)
    return total


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS_MS) + 1)
        self.total = 0.0

    def observe(self, ms: float) -> None:
        """Into the first bucket whose bound it does not exceed (Prometheus's ``le``)."""
        self.counts[bisect_left(_BOUNDS_MS, ms)] += 1
        self.total += ms


class Tap:
    """One process's records, aggregated in batches into its cumulative series.

    ``add`` only appends (it is on every record's path); ``aggregate`` takes a batch once a
    second. Stage names come from each turn's own samples (``shape_samples`` of its
    shape), so every stage a profile yields (ttfe, events, gap, spans, e2e, ttft, itl) has
    its histogram without a list kept here. ``inflight`` and ``open_sessions`` read the
    process's live counts when a snapshot is taken.
    """

    def __init__(
        self,
        node: str,
        inflight: Callable[[], int] = lambda: 0,
        open_sessions: Callable[[], int] | None = None,
    ) -> None:
        self.node = node
        self.inflight = inflight
        self.open_sessions = open_sessions
        self.pending: list[Record] = []
        self._counters: dict[Key, float] = {}
        self._histograms: dict[Key, _Histogram] = {}
        self._gauges: dict[Key, float] = {}
        self._stages: dict[TurnShape, list[_Histogram | None]] = {}
        self._turns_ended = 0

    def add(self, record: Record) -> None:
        self.pending.append(record)

    def take(self) -> list[Record]:
        """The records added since the last call."""
        records, self.pending = self.pending, []
        return records

    def aggregate(self, records: Iterable[Record]) -> None:
        """Records into the series."""
        count = self._count
        for record in records:
            kind = type(record)
            if kind is TurnRecord:
                self._turn(record)  # type: ignore[arg-type]
            elif kind is ConnectionAttempt:
                self._attempt(record)  # type: ignore[arg-type]
            elif kind is SessionEvent:
                count(SESSION_EVENTS.name, record.name, record.failure or OK)  # type: ignore[union-attr]
            elif kind is ProbeRecord:
                failure = record.failure
                count(PROBES.name, record.name, failure or OK)  # type: ignore[union-attr]
                if failure == taxonomy.AUTH_NOT_ENFORCED:
                    count(AUTH_NOT_ENFORCED.name, record.name)  # type: ignore[union-attr]
            elif kind is HttpRequest:
                count(HTTP_REQUESTS.name, record.name, record.failure or OK)  # type: ignore[union-attr]
            elif kind is HealthTick:
                self._health(record)  # type: ignore[arg-type]

    def snapshot(self) -> Snapshot:
        """A copy of the cumulative series, live counts read now."""
        counters = dict(self._counters)
        counters[(TURNS_STARTED.name, ())] = float(self._turns_ended + self.inflight())
        counters.setdefault((TURNS_COMPLETED.name, ()), 0.0)
        gauges = dict(self._gauges)
        if self.open_sessions is not None:
            gauges[(OPEN_SESSIONS.name, ())] = float(self.open_sessions())
        histograms = {key: (list(h.counts), h.total) for key, h in self._histograms.items()}
        return Snapshot(counters, histograms, gauges)

    # one kind of record each ------------------------------------------------------------
    def _count(self, name: str, *labels: str) -> None:
        key = (name, labels)
        self._counters[key] = self._counters.get(key, 0.0) + 1.0

    def _histogram(self, key: Key) -> _Histogram:
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = _Histogram()
        return histogram

    def _turn(self, record: TurnRecord) -> None:
        """The turn's outcome, and each of its samples into its stage's histogram."""
        self._turns_ended += 1
        counters = self._counters
        counters[_COMPLETED] = counters.get(_COMPLETED, 0.0) + 1.0
        failure = record.result.failure
        if failure is not None:
            self._count(TURNS_FAILED.name, failure)
        shape = record.shape()
        histograms = self._stages.get(shape)
        if histograms is None:
            histograms = self._stages[shape] = self._stage_histograms(shape)
        values = record.timings()
        values.append(record.e2e_ms)
        bounds = _BOUNDS_MS
        for histogram, ms in zip(histograms, values, strict=True):  # observe(), inlined
            if histogram is not None:
                histogram.counts[bisect_left(bounds, ms)] += 1
                histogram.total += ms
        if record.output_tokens:
            counters[_TOKENS] = counters.get(_TOKENS, 0.0) + record.output_tokens

    def _stage_histograms(self, shape: TurnShape) -> list[_Histogram | None]:
        """The histogram of each value ``timings()`` gives for ``shape``, then e2e's; None
        for a value that is not a latency (a streamed answer's token count and rate)."""
        out: list[_Histogram | None] = []
        for _, name in shape_samples(shape):
            latency = name not in NOT_LATENCY
            out.append(self._histogram((TURN_STAGE.name, (_stage(name),))) if latency else None)
        out.append(self._histogram((TURN_STAGE.name, ("e2e",))))
        return out

    def _attempt(self, record: ConnectionAttempt) -> None:
        """Connect and (after a 101) auth outcomes; latency of the phases that succeeded
        (``tls``, a part of connect over ``wss://``, only as latency)."""
        for sample in record.samples():
            phase = sample.kind  # connect | tls | auth
            if phase != "tls":
                outcome = sample.failure or OK
                self._count(CONNECTS.name if phase == "connect" else AUTH.name, outcome)
            if sample.failure is None:
                self._histogram((HANDSHAKE.name, (phase,))).observe(sample.ms)

    def _health(self, tick: HealthTick) -> None:
        node = (self.node,)
        self._gauges[(CPU.name, node)] = tick.cpu_percent
        self._gauges[(LAG.name, node)] = tick.lag_ms / 1000.0
        if tick.users is not None:
            self._gauges[(USERS.name, ())] = float(tick.users)


def _stage(name: str) -> str:
    """``turn:ttfe`` -> ``ttfe``: the stage label of a turn sample's stats name."""
    return name[5:] if name.startswith("turn:") else name
