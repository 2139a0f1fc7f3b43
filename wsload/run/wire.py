"""Records on the wire: how a worker ships its batches to the master, compactly.

Locust's messages carry msgpack, so a record travels as a short list of plain values,
tagged by its type. An agent turn is a dozen samples whose names repeat turn after turn:
it travels as a shape id and its numbers, and each shape (the names) travels once per
worker process, so no per-sample name crosses the wire. The master decodes the lists
back into the same records, and from there nothing tells a shipped record from a local
one. Pure: no Locust, no sockets.
"""

from __future__ import annotations

from typing import Any

from wsload.net.probes import ProbeResult
from wsload.protocol.tracker import TurnResult
from wsload.run.batch import Batch
from wsload.run.records import (
    ConnectionAttempt,
    HealthTick,
    HttpRequest,
    ProbeRecord,
    Record,
    SessionEvent,
    TurnRecord,
    TurnShape,
    Who,
)

_TURN, _CONNECTION, _PROBE, _SESSION, _HTTP, _HEALTH = range(6)


class Encoder:
    """A worker's side: batches to messages; remembers which shapes it announced."""

    def __init__(self) -> None:
        self._shapes: dict[TurnShape, int] = {}

    def encode(self, batch: Batch) -> dict[str, Any]:
        announced: list[list[Any]] = []
        shapes = self._shapes
        items: list[Any] = []
        append = items.append
        for item in batch.items:
            kind = type(item)
            if kind is int:
                append(item)
            elif kind is TurnRecord:
                shape = item.shape()  # type: ignore[union-attr]
                number = shapes.get(shape)
                if number is None:
                    number = shapes[shape] = len(shapes)
                    announced.append([number, [shape[0], list(shape[1]), shape[2]]])
                    stream = shape[5]
                    announced[-1][1] += [list(shape[3]), shape[4], stream and list(stream)]
                append(_turn(item, number))  # type: ignore[arg-type]
            else:
                append(_ENCODERS[kind](item))  # type: ignore[index]
        return {"node": batch.node, "shapes": announced, "items": items}


class Decoder:
    """The master's side: messages back to batches, with each worker's shapes."""

    def __init__(self) -> None:
        self._shapes: dict[tuple[str, int], TurnShape] = {}

    def decode(self, sender: str, message: dict[str, Any]) -> Batch:
        shapes = self._shapes
        for number, (ttfe, firsts, gaps, spans, intended, stream) in message["shapes"]:
            shapes[(sender, number)] = (
                ttfe, tuple(firsts), gaps, tuple(spans), intended, stream and tuple(stream),
            )  # fmt: skip
        batch = Batch(message["node"])
        out = batch.items
        for item in message["items"]:
            if type(item) is int:
                out.append(item)
            elif item[0] == _TURN:
                out.append(_decode_turn(item, shapes[(sender, item[9])]))
            else:
                out.append(_DECODERS[item[0]](item))
        return batch


def _who(who: Who) -> tuple[int, str, str]:
    return who.user, who.subject, who.session


def _turn(record: TurnRecord, shape: int) -> list[Any]:
    result = record.result
    who = record.who
    return [_TURN, record.started_at, who.user, who.subject, who.session, record.turn,
            record.inflight, record.sent_bytes, record.intended_ms, shape, record.timings(),
            result.ok, result.failure, record.detail, record.e2e_ms, result.events,
            record.output_chars, record.output_words, record.token_events]  # fmt: skip


def _decode_turn(item: list[Any], shape: TurnShape) -> TurnRecord:
    (_, started, user, subject, session, turn, inflight, sent, intended, _, values, ok,
     failure, detail, e2e, events, chars, words, token_events) = item  # fmt: skip
    has_ttfe, firsts, gaps, spans, _, stream = shape
    at = 1 if has_ttfe else 0
    first_ms = dict(zip(firsts, values[at : at + len(firsts)], strict=True))
    at += len(firsts)
    gaps_ms = values[at : at + gaps]
    at += gaps
    spans_ms = list(zip(spans, values[at : at + len(spans)], strict=True))
    at += len(spans)
    result = TurnResult(
        ok=ok,
        failures=[(failure, detail)] if failure or detail else [],
        ttfe_ms=values[0] if has_ttfe else None,
        e2e_ms=e2e,
        elapsed_ms=e2e,
        first_ms=first_ms,
        gaps_ms=gaps_ms,
        spans_ms=spans_ms,
        events=events,
        names=[],
        run_id=None,
        terminal=None,
    )
    record = TurnRecord(
        started, Who(user, subject, session), turn, inflight, sent, result, intended
    )
    if stream is not None:
        itls, has_tpot, has_rate = stream
        record.ttft_ms = values[at]
        record.itl_ms = values[at + 1 : at + 1 + itls]
        at += 1 + itls
        if has_tpot:
            record.tpot_ms = values[at]
            at += 1
        record.output_tokens = int(values[at])
        if has_rate:
            record.tokens_per_s = values[at + 1]
        record.output_chars, record.output_words = chars, words
        record.token_events = token_events
    return record


def _connection(r: ConnectionAttempt) -> list[Any]:
    return [_CONNECTION, r.started_at, *_who(r.who), r.inflight, r.connect_ms, r.auth_ms,
            r.failure, r.phase, r.detail, r.http_status, r.close_code, r.tcp_ms, r.tls_ms,
            r.upgrade_ms, r.tls_resumed, r.extensions]  # fmt: skip


def _decode_connection(item: list[Any]) -> ConnectionAttempt:
    _, started, user, subject, session, *rest = item
    return ConnectionAttempt(started, Who(user, subject, session), *rest)


def _probe(r: ProbeRecord) -> list[Any]:
    p = r.result
    return [_PROBE, r.started_at, *_who(r.who), r.name, r.kind, p.probe, p.ok, p.outcome,
            p.failure, p.elapsed_ms, p.detail, p.http_status, p.close_code]  # fmt: skip


def _decode_probe(item: list[Any]) -> ProbeRecord:
    _, started, user, subject, session, name, kind, *result = item
    return ProbeRecord(started, Who(user, subject, session), name, kind, ProbeResult(*result))


def _session(r: SessionEvent) -> list[Any]:
    return [_SESSION, r.started_at, *_who(r.who), r.name, r.ms, r.failure, r.detail,
            r.close_code]  # fmt: skip


def _decode_session(item: list[Any]) -> SessionEvent:
    _, started, user, subject, session, *rest = item
    return SessionEvent(started, Who(user, subject, session), *rest)


def _http(r: HttpRequest) -> list[Any]:
    return [_HTTP, r.started_at, *_who(r.who), r.name, r.ms, r.failure, r.detail,
            r.http_status, r.length]  # fmt: skip


def _decode_http(item: list[Any]) -> HttpRequest:
    _, started, user, subject, session, *rest = item
    return HttpRequest(started, Who(user, subject, session), *rest)


def _health(r: HealthTick) -> list[Any]:
    return [_HEALTH, r.at, r.cpu_percent, r.lag_ms, r.users]


def _decode_health(item: list[Any]) -> HealthTick:
    return HealthTick(*item[1:])


_ENCODERS: dict[type, Any] = {
    ConnectionAttempt: _connection,
    ProbeRecord: _probe,
    SessionEvent: _session,
    HttpRequest: _http,
    HealthTick: _health,
}
_DECODERS: dict[int, Any] = {
    _CONNECTION: _decode_connection,
    _PROBE: _decode_probe,
    _SESSION: _decode_session,
    _HTTP: _decode_http,
    _HEALTH: _decode_health,
}

__all__ = ["Decoder", "Encoder", "Record"]
