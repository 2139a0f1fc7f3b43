"""Typed records: one per observation, made in one place, handed to one recorder.

Every measurement wsload takes is one of these: a connection attempt, an agent turn, a
probe, a session event, a generator health tick, or an HTTP request of Locust's own
clients. Users build a record where the observation ends and hand it to the run's recorder
(``wsload.locust.recording``), which feeds Locust's stats and the results writer from it.
Nothing is encoded into labels and decoded again; readers ask a record for its
``samples()``: the (stats name, time, failure) triples Locust's statistics and the long
results view are made of. Pure: no Locust, no sockets, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from wsload.net.probes import ProbeResult
    from wsload.protocol.tracker import TurnResult


class Sample(NamedTuple):
    """One stats entry's measurement: what Locust counts, and one row of the long view."""

    kind: str  # connect | tls | auth | event | gap | span | intended | turn | session | probe ...
    name: str  # the stats name
    ms: float
    failure: str | None = None  # taxonomy id; None is a success
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(slots=True)
class Who:
    """Whose observation it is: user index, subject and session id within a process."""

    user: int = 0
    subject: str = ""
    session: str = ""


@dataclass(slots=True)
class ConnectionAttempt:
    """One connection attempt: TCP connect to a valid 101 (``connect``; over ``wss://`` its
    TLS handshake is also ``tls``), 101 to the ack (``auth``). ``failure`` with ``phase``
    says where it stopped."""

    started_at: float  # epoch seconds
    who: Who
    inflight: int  # handshakes in flight in this process when it started
    connect_ms: float | None
    auth_ms: float | None = None
    failure: str | None = None
    phase: str | None = None  # connect | auth, where the failure happened
    detail: str = ""
    http_status: int | None = None
    close_code: int | None = None
    tcp_ms: float | None = None
    tls_ms: float | None = None
    upgrade_ms: float | None = None
    tls_resumed: bool | None = None  # wss://: the TLS session of an earlier one was resumed
    extensions: str = ""  # what the 101 agreed to, e.g. "permessage-deflate; ..."

    kind = "connection"

    def samples(self) -> Iterator[Sample]:
        if self.phase == "connect":
            yield Sample("connect", "connect", self.connect_ms or 0.0, self.failure, self.detail)
            return
        # a session's row says what the 101 agreed to (the raw results keep it per session)
        yield Sample("connect", "connect", self.connect_ms or 0.0, None, self.extensions)
        if self.tls_ms is not None:  # wss://: the TLS handshake, a part of connect
            yield Sample("tls", "tls", self.tls_ms, None, "resumed" if self.tls_resumed else "")
        yield Sample("auth", "auth", self.auth_ms or 0.0, self.failure, self.detail)


@dataclass(slots=True)
class TurnRecord:
    """One agent turn: the tracker's verdict and timings, and who sent what when."""

    started_at: float  # epoch seconds when the message was sent
    who: Who
    turn: int  # turn number within the process
    inflight: int  # turns in flight in this process
    sent_bytes: int
    result: TurnResult
    intended_ms: float | None = None  # open model: e2e from when the message was due
    # The streamed answer (docs/profiles.md "[stream]"), None when no token event came;
    # filled from ``result.stream`` when not given.
    ttft_ms: float | None = None  # message sent to the first token event
    itl_ms: list[float] | None = None  # gaps between consecutive token events
    tpot_ms: float | None = None  # (last token event - first) / (output tokens - 1)
    output_tokens: int | None = None  # by the profile's tokenizer
    tokens_per_s: float | None = None  # output tokens / (sent to last token event)
    output_chars: int | None = None
    output_words: int | None = None  # whitespace tokens
    token_events: int | None = None

    kind = "turn"

    def __post_init__(self) -> None:
        stream = self.result.stream
        if stream is not None and self.ttft_ms is None:
            self.ttft_ms = stream.ttft_ms
            self.itl_ms = stream.itl_ms
            self.tpot_ms = stream.tpot_ms
            self.output_tokens = stream.tokens
            self.tokens_per_s = stream.tokens_per_s
            self.output_chars = stream.chars
            self.output_words = stream.words
            self.token_events = stream.events

    @property
    def e2e_ms(self) -> float:
        result = self.result
        return result.e2e_ms if result.ok and result.e2e_ms is not None else result.elapsed_ms

    @property
    def detail(self) -> str:
        return "; ".join(d for _, d in self.result.failures)[:300]

    @property
    def failure(self) -> str | None:
        """The turn's verdict as a taxonomy id (None: the turn succeeded)."""
        return self.result.failure

    def shape(self) -> TurnShape:
        """Which samples the turn has, without their values: turns of one shape share
        everything but numbers, so writers format them from one cached template."""
        result = self.result
        return (
            result.ttfe_ms is not None,
            tuple(result.first_ms),
            len(result.gaps_ms),
            tuple([span for span, _ in result.spans_ms]),
            self.intended_ms is not None,
            self._stream_shape(),
        )

    def _stream_shape(self) -> StreamShape:
        if self.ttft_ms is None:
            return None
        return (len(self.itl_ms or ()), self.tpot_ms is not None, self.tokens_per_s is not None)

    def stream_timings(self) -> list[float]:
        """The stream samples' values in ``samples()`` order (none when not streamed)."""
        if self.ttft_ms is None:
            return []
        values = [self.ttft_ms, *(self.itl_ms or ())]
        if self.tpot_ms is not None:
            values.append(self.tpot_ms)
        values.append(float(self.output_tokens or 0))
        if self.tokens_per_s is not None:
            values.append(self.tokens_per_s)
        return values

    def timings(self) -> list[float]:
        """The values of every sample but ``turn:e2e``, in ``samples()`` order."""
        result = self.result
        values = [] if result.ttfe_ms is None else [result.ttfe_ms]
        values.extend(result.first_ms.values())
        values.extend(result.gaps_ms)
        values.extend([ms for _, ms in result.spans_ms])
        if self.ttft_ms is not None:
            values.extend(self.stream_timings())
        if self.intended_ms is not None:
            values.append(self.intended_ms)
        return values

    def samples(self) -> Iterator[Sample]:
        """``turn:ttfe``, ``turn:<event>``, ``turn:gap``, ``turn:<span>``, the stream's
        (``turn:ttft``, ``turn:itl``, ``turn:tpot``, ``turn:output_tokens``,
        ``turn:tokens_per_s``), then ``turn:e2e``."""
        result = self.result
        if result.ttfe_ms is not None:
            yield Sample("event", "turn:ttfe", result.ttfe_ms)
        for name, ms in result.first_ms.items():
            yield Sample("event", f"turn:{name}", ms)
        for ms in result.gaps_ms:
            yield Sample("gap", "turn:gap", ms)
        for span, ms in result.spans_ms:
            yield Sample("span", f"turn:{span}", ms)
        if self.ttft_ms is not None:
            for (kind, name), value in zip(
                stream_samples(self._stream_shape()), self.stream_timings(), strict=True
            ):
                yield Sample(kind, name, value)
        if self.intended_ms is not None:
            yield Sample("intended", "turn:e2e_intended", self.intended_ms)
        yield Sample("turn", "turn:e2e", self.e2e_ms, result.failure, self.detail)


@dataclass(slots=True)
class ProbeRecord:
    """One negative probe (auth or handshake conformance) and how the server answered."""

    started_at: float
    who: Who
    name: str  # probe:<probe> or conformance:<probe>
    kind: str  # probe | conformance
    result: ProbeResult

    @property
    def failure(self) -> str | None:
        return self.result.failure

    @property
    def http_status(self) -> int | None:
        return self.result.http_status

    @property
    def close_code(self) -> int | None:
        return self.result.close_code

    def samples(self) -> Iterator[Sample]:
        result = self.result
        detail = f"{result.outcome}: {result.detail}"[:300]
        yield Sample(self.kind, self.name, result.elapsed_ms, result.failure, detail)


@dataclass(slots=True)
class SessionEvent:
    """Something that happened to a session outside a turn: a ping round trip, a refresh,
    a reconnect, a disconnect, a stray, foreign, duplicate or malformed frame."""

    started_at: float
    who: Who
    name: str  # ping | session:refresh | session:reconnect | session:disconnect | ...
    ms: float = 0.0
    failure: str | None = None
    detail: str = ""
    close_code: int | None = None

    kind = "session"

    def samples(self) -> Iterator[Sample]:
        yield Sample("session", self.name, self.ms, self.failure, self.detail)


@dataclass(slots=True)
class HttpRequest:
    """A request of Locust's own HTTP clients (a login, a token refresh, a ticket)."""

    started_at: float
    who: Who
    name: str
    ms: float
    failure: str | None = None
    detail: str = ""
    http_status: int | None = None
    length: int = 0

    kind = "http"

    def samples(self) -> Iterator[Sample]:
        yield Sample("http", self.name, self.ms, self.failure, self.detail)


@dataclass(slots=True)
class HealthTick:
    """Generator health of one process for one second: CPU share and event-loop lag.

    Not a request: it never enters Locust's stats, only the results."""

    at: float
    cpu_percent: float
    lag_ms: float
    users: int | None = None  # the master's (or a standalone process's) running users

    kind = "health"
    failure = None  # a tick never fails

    def samples(self) -> Iterator[Sample]:
        yield Sample("health", "health:cpu", self.cpu_percent)
        yield Sample("health", "health:lag", self.lag_ms)
        if self.users is not None:
            yield Sample("health", "health:users", float(self.users))


# A streamed turn's samples: (ITL count, tpot present, tokens/s present); None: not streamed.
StreamShape = tuple[int, bool, bool] | None
# (ttfe present, first-event names, gap count, span names, intended present, stream)
TurnShape = tuple[bool, tuple[str, ...], int, tuple[str, ...], bool, StreamShape]

# Stats names of a streamed answer; the last two hold a count and a rate, not milliseconds.
STREAM_NAMES = ("turn:ttft", "turn:itl", "turn:tpot", "turn:output_tokens", "turn:tokens_per_s")
STREAM_KIND = "stream"


def stream_samples(stream: StreamShape) -> list[tuple[str, str]]:
    """(kind, stats name) of each value ``TurnRecord.stream_timings()`` gives."""
    if stream is None:
        return []
    itls, has_tpot, has_rate = stream
    out = [(STREAM_KIND, "turn:ttft")] + [(STREAM_KIND, "turn:itl")] * itls
    if has_tpot:
        out.append((STREAM_KIND, "turn:tpot"))
    out.append((STREAM_KIND, "turn:output_tokens"))
    if has_rate:
        out.append((STREAM_KIND, "turn:tokens_per_s"))
    return out


def shape_samples(shape: TurnShape) -> list[tuple[str, str]]:
    """(kind, stats name) of each value ``TurnRecord.timings()`` gives for ``shape``."""
    has_ttfe, firsts, gaps, spans, has_intended, stream = shape
    out = [("event", "turn:ttfe")] if has_ttfe else []
    out += [("event", f"turn:{name}") for name in firsts]
    out += [("gap", "turn:gap")] * gaps
    out += [("span", f"turn:{span}") for span in spans]
    out += stream_samples(stream)
    if has_intended:
        out.append(("intended", "turn:e2e_intended"))
    return out


Record = ConnectionAttempt | TurnRecord | ProbeRecord | SessionEvent | HttpRequest | HealthTick
