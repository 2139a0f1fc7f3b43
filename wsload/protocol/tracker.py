"""Judges and times one agent turn, sans I/O: events and receive times in, verdicts out.

A ``TurnTracker`` is told when the chat message was sent and then fed every event the
session received, with the time it arrived (``time.perf_counter`` seconds, taken by the
caller as close to the wire as it can). It has no clock of its own, so tests, the live
user and the offline analysis all get the same answer for the same input. A time earlier
than the send or than the event before counts as that time: the send is read from
``perf_counter`` and arrivals from the kernel, and a duration must never come out negative.

Verdicts, from the profile's grammar (see ``wsload.protocol.grammar``):

* ``foreign_event``: an event names another user, thread or run than this turn's.
* ``sequence_duplicate``: a frame identical to an earlier one, or a second occurrence of
  an event the grammar allows only once.
* ``sequence_order``: an event the turn can no longer accept and has already passed.
* ``sequence_missing``: events the grammar requires never came (skipped, or the terminal
  event came early).
* ``agent_error``: an error event; it ends the turn.
* ``event_timeout``: silence longer than the event timeout, or the turn took too long.
* ``disconnected_<code>``: the connection closed during the turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wsload import taxonomy
from wsload.config.profile import Events
from wsload.config.stream import Stream, token_counter
from wsload.config.templates import get_field
from wsload.protocol.grammar import Grammar
from wsload.protocol.streaming import StreamMetrics, measure


def span_name(start: str, end: str) -> str:
    """A short name for a span: the common prefix of its events (``tool``), the subtype
    both share (``new_message:tool`` .. ``update_message:tool``: ``tool``), else the start."""
    if ":" in start and start.rsplit(":", 1)[1] == end.rsplit(":", 1)[-1]:
        return start.rsplit(":", 1)[1]
    prefix = ""
    for a, b in zip(start, end, strict=False):
        if a != b:
            break
        prefix += a
    prefix = prefix.rstrip("_.:-")
    return prefix or start


@dataclass(slots=True)
class TurnResult:
    """Timings (milliseconds from the message send) and verdicts of one turn."""

    ok: bool
    failures: list[tuple[str, str]]  # (taxonomy id, detail), in the order found
    ttfe_ms: float | None
    e2e_ms: float | None  # to the terminal (or error) event; None if it never came
    elapsed_ms: float  # to the verdict, whatever it was
    first_ms: dict[str, float]  # event name -> first occurrence
    gaps_ms: list[float]
    spans_ms: list[tuple[str, float]]  # (span name, duration)
    events: int
    names: list[str]
    run_id: str | None
    terminal: str | None
    stream: StreamMetrics | None = None  # the streamed answer, when token events came

    @property
    def failure(self) -> str | None:
        """The failure that names this turn in stats: an event of someone else if there was
        one (the security gate counts it, whatever else went wrong), else the first found."""
        for failure, _ in self.failures:
            if failure == taxonomy.FOREIGN_EVENT:
                return failure
        return self.failures[0][0] if self.failures else None


class _Rules:
    """What a profile says about turns, compiled once: the tracker runs for every turn."""

    def __init__(self, events: Events, grammar: Grammar, stream: Stream | None) -> None:
        self.events = events
        self.grammar = grammar
        self.stream = stream
        # token-bearing events, the path of their text (None: not read), how to count it
        self.stream_events = frozenset(stream.events) if stream is not None else frozenset()
        # "a|b": the text is at a, else at b (Chainlit: a stream's first token is the
        # stream_start's "output", the others each stream_token's "token")
        self.text_path = (
            tuple(tuple(p.split(".")) for p in stream.text_field.split("|"))
            if stream and stream.text_field
            else None
        )
        self.count_tokens = token_counter(stream.tokenizer) if self.stream_events else len
        self.terminal = frozenset(events.terminal)
        self.errors = frozenset(events.error)
        self.ignore = frozenset(events.ignore)
        self.span_starts = {
            s[0]: (span_name(s[0], s[1]), s[1]) for s in events.spans if len(s) == 2
        }
        self.span_ends = {s[1]: s[0] for s in events.spans if len(s) == 2}
        self.span_names = frozenset(self.span_starts) | frozenset(self.span_ends)
        self.span_id_field = events.span_id_field
        self.grammar_names = grammar.names
        self.type_field = events.type_field
        self.user_id_field = events.user_id_field
        self.thread_id_field = events.thread_id_field
        self.run_id_field = events.run_id_field
        self.unique_frames = events.frames_are_unique


_RULES: dict[tuple[int, int, int], _Rules] = {}


def _rules(events: Events, grammar: Grammar, stream: Stream | None = None) -> _Rules:
    key = (id(events), id(grammar), id(stream))
    rules = _RULES.get(key)
    if (
        rules is None
        or rules.events is not events
        or rules.grammar is not grammar
        or rules.stream is not stream
    ):
        rules = _RULES[key] = _Rules(events, grammar, stream)
    return rules


class TurnTracker:
    """One turn: feed it events until ``done``; read ``result``."""

    __slots__ = (
        "_deadline_total", "_end_at", "_errors", "_event_timeout_s", "_failures", "_first",
        "_first_at", "_gaps", "_grammar", "_grammar_broken", "_ignore", "_last_at", "_names",
        "_open_spans", "_rules", "_seen_names", "_seen_raw", "_skipped", "_spans_done",
        "_states", "_terminal", "_terminal_name", "_token_at", "_token_texts", "_verdict_at",
        "done", "run_id", "sent_at", "thread_id", "user_id",
    )  # fmt: skip

    def __init__(
        self,
        events: Events,
        grammar: Grammar,
        *,
        sent_at: float,
        user_id: str | None,
        thread_id: str | None,
        timeout_s: float,
        event_timeout_s: float,
        stream: Stream | None = None,
    ) -> None:
        rules = _rules(events, grammar, stream)
        self._rules = rules
        self._grammar = grammar
        self._states = grammar.initial
        self._terminal = rules.terminal
        self._errors = rules.errors
        self._ignore = rules.ignore
        self.sent_at = sent_at
        self.user_id = user_id
        self.thread_id = thread_id
        self.run_id: str | None = None
        self._deadline_total = sent_at + timeout_s
        self._event_timeout_s = event_timeout_s
        self._last_at = sent_at
        self._first_at: float | None = None
        self._end_at: float | None = None
        self._verdict_at: float | None = None
        self._terminal_name: str | None = None
        self._failures: list[tuple[str, str]] = []
        self._first: dict[str, float] = {}
        self._gaps: list[float] = []
        self._names: list[str] = []
        self._seen_raw: set[str] = set()
        self._seen_names: set[str] = set()
        self._skipped: list[str] = []
        self._grammar_broken = False
        self._open_spans: dict[str, list[tuple[Any, float]]] = {}
        self._spans_done: list[tuple[str, float]] = []
        self._token_at: list[float] | None = None  # arrival of each token event
        self._token_texts: list[str] = []
        self.done = False

    # input ---------------------------------------------------------------------------
    def deadline(self) -> float:
        """When this turn times out unless another event comes (perf_counter seconds)."""
        return min(self._deadline_total, self._last_at + self._event_timeout_s)

    def feed(self, event: dict[str, Any], at: float, raw: str | None = None) -> bool:
        """Take one received event; returns True once the turn is finished.

        Runs for every event of every turn, so the common path (an event of this turn, in
        order) is straight-line code; anything unusual goes to the helpers.
        """
        if self.done:
            return True
        rules = self._rules
        name = event.get(rules.type_field)
        if not isinstance(name, str) or name in self._ignore:
            return False
        foreign = self._foreign(event)
        if foreign is not None:
            self._fail(taxonomy.FOREIGN_EVENT, f"{name}: {foreign}")
            return False
        if raw is not None and rules.unique_frames:
            if raw in self._seen_raw:
                self._fail(taxonomy.SEQUENCE_DUPLICATE, f"{name} received twice")
                return False
            self._seen_raw.add(raw)
        if self.run_id is None:
            run_id = event.get(rules.run_id_field)
            self.run_id = None if run_id is None else str(run_id)
        # the event's times, never before the send or the event before
        if at < self._last_at:
            at = self._last_at
        if self._first_at is None:
            self._first_at = at
        else:
            self._gaps.append((at - self._last_at) * 1000.0)
        self._last_at = at
        if name not in self._first:
            self._first[name] = at
        self._names.append(name)
        if name in rules.span_names:
            self._span_event(name, at, event)
        if name in rules.stream_events:
            self._token_event(event, at)
        # its verdict
        if name in self._errors:
            detail = str(
                event.get("error") or event.get("error_message") or event.get("data") or ""
            )
            self._fail(taxonomy.AGENT_ERROR, f"{name} {detail[:200]}".strip())
            return self._finish(at, name)
        if name in rules.grammar_names:
            self._advance(name)
            if name in self._terminal:
                return self._finish(at, name)
        return False

    def expire(self, now: float) -> TurnResult:
        """Give up on the turn at ``now`` (call once ``now >= deadline()``)."""
        if not self.done:
            silent = (now - self._last_at) * 1000.0
            self._fail(
                taxonomy.EVENT_TIMEOUT,
                f"{len(self._names)} events, then {silent:.0f} ms of silence"
                + (f"; expected {', '.join(sorted(self._expected()))}" if self._names else ""),
            )
            self._verdict_at = max(now, self._last_at)
            self.done = True
        return self.result()

    def disconnected(self, code: int | None, now: float) -> TurnResult:
        """The connection closed before the turn finished."""
        if not self.done:
            self._fail(taxonomy.disconnected(code), f"after {len(self._names)} events")
            self._verdict_at = max(now, self._last_at)
            self.done = True
        return self.result()

    # output --------------------------------------------------------------------------
    @property
    def frames(self) -> set[str]:
        """The raw frames taken into this turn (only kept when the profile's are unique)."""
        return self._seen_raw

    def result(self) -> TurnResult:
        verdict_at = self._verdict_at if self._verdict_at is not None else self._last_at
        return TurnResult(
            ok=not self._failures and self.done and self._end_at is not None,
            failures=list(self._failures),
            ttfe_ms=None if self._first_at is None else (self._first_at - self.sent_at) * 1000.0,
            e2e_ms=None if self._end_at is None else (self._end_at - self.sent_at) * 1000.0,
            elapsed_ms=(verdict_at - self.sent_at) * 1000.0,
            first_ms={k: (v - self.sent_at) * 1000.0 for k, v in self._first.items()},
            gaps_ms=list(self._gaps),
            spans_ms=list(self._spans_done),
            events=len(self._names),
            names=list(self._names),
            run_id=self.run_id,
            terminal=self._terminal_name,
            stream=self._stream(),
        )

    # internals -----------------------------------------------------------------------
    def _foreign(self, event: dict[str, Any]) -> str | None:
        rules = self._rules
        for field_name, mine in (
            (rules.user_id_field, self.user_id),
            (rules.thread_id_field, self.thread_id),
            (rules.run_id_field, self.run_id),
        ):
            if mine is None:
                continue
            theirs = event.get(field_name)
            if theirs is not None and theirs != mine and str(theirs) != mine:
                return f"{field_name} {theirs!r} is not this turn's {mine!r}"
        return None

    def _token_event(self, event: dict[str, Any], at: float) -> None:
        """A token-bearing event counts when its text is a non-empty string (an empty one
        opens or keeps a stream alive); with no text field, every one counts."""
        paths = self._rules.text_path
        if paths is not None:
            for path in paths:
                text: Any = event
                for part in path:
                    if not isinstance(text, dict):
                        text = None
                        break
                    text = text.get(part)
                if isinstance(text, str) and text:
                    break
            else:
                return
            self._token_texts.append(text)
        if self._token_at is None:
            self._token_at = [at]
        else:
            self._token_at.append(at)

    def _stream(self) -> StreamMetrics | None:
        if self._token_at is None:
            return None
        rules = self._rules
        texts = None if rules.text_path is None else self._token_texts
        return measure(self.sent_at, self._token_at, texts, rules.count_tokens)

    def _span_event(self, name: str, at: float, event: dict[str, Any]) -> None:
        """Open or close a span. With ``events.span_id_field`` an end closes the open start
        with the same id (concurrent steps), else, or without an id, the oldest open one."""
        rules = self._rules
        span_id = get_field(event, rules.span_id_field) if rules.span_id_field else None
        if name in rules.span_starts:
            self._open_spans.setdefault(name, []).append((span_id, at))
        start = rules.span_ends.get(name)
        opened = self._open_spans.get(start) if start is not None else None
        if opened:
            index = 0
            if span_id is not None:
                index = next((i for i, (sid, _) in enumerate(opened) if sid == span_id), 0)
            began = opened.pop(index)[1]
            self._spans_done.append((rules.span_starts[start][0], (at - began) * 1000.0))

    def _advance(self, name: str) -> None:
        seen_before = name in self._seen_names
        self._seen_names.add(name)
        if self._grammar_broken:
            return
        nxt = self._grammar.step(self._states, name)
        if nxt:
            self._states = nxt
            return
        if seen_before and not self._grammar.repeatable(name):
            self._fail(taxonomy.SEQUENCE_DUPLICATE, f"second {name}")
            return
        skipped = self._grammar.step(self._grammar.ahead(self._states), name)
        if skipped:
            self._skipped.append(f"before {name}: {', '.join(sorted(self._expected()))}")
            self._states = skipped
            return
        expected = ", ".join(sorted(self._expected())) or "nothing"
        self._fail(taxonomy.SEQUENCE_ORDER, f"{name} where {expected} was expected")
        self._grammar_broken = True

    def _expected(self) -> frozenset[str]:
        return self._grammar.expected(self._states)

    def _finish(self, at: float, name: str) -> bool:
        self._end_at = at
        self._verdict_at = at
        self._terminal_name = name
        self.done = True
        ids = {f for f, _ in self._failures}
        if name not in self._errors and taxonomy.SEQUENCE_ORDER not in ids:
            if self._skipped:
                self._fail(taxonomy.SEQUENCE_MISSING, "; ".join(self._skipped))
            elif not self._grammar_broken and not self._grammar.accepts(self._states):
                self._fail(taxonomy.SEQUENCE_MISSING, f"{name} came before the turn was complete")
        return True

    def _fail(self, failure: str, detail: str) -> None:
        self._failures.append((failure, detail))


_NO_FRAMES: frozenset[str] = frozenset()


class FinishedTurns:
    """The last few turns of a user that ended with their terminal (or error) event.

    A server that sends an event of such a turn again (a duplicated ``agent_completed``,
    say) must not be taken at its word: the event is neither a new turn's nor a stray, it
    is a duplicate. It is told by its run id; for events without one, by being byte-identical
    to a frame of the last finished turn (only when the profile says frames are unique).
    Run ids are unique, so the memory spans sessions; it is bounded to ``keep`` turns.
    """

    __slots__ = ("_frames", "_keep", "_rules", "_runs")

    def __init__(self, events: Events, grammar: Grammar, keep: int = 16) -> None:
        self._rules = _rules(events, grammar)
        self._keep = keep
        self._runs: dict[str, None] | None = None  # an ordered set: oldest first
        self._frames: set[str] | frozenset[str] = _NO_FRAMES

    def add(self, turn: TurnTracker) -> None:
        """Remember a turn that has just ended with its terminal event."""
        if turn.run_id is not None:
            runs = self._runs
            if runs is None:
                runs = self._runs = {}
            runs[turn.run_id] = None
            if len(runs) > self._keep:
                del runs[next(iter(runs))]
        self._frames = turn.frames

    def duplicate(self, event: dict[str, Any], raw: str | None) -> str | None:
        """Why ``event`` repeats a finished turn (a detail for the sample), else None."""
        rules = self._rules
        run_id = event.get(rules.run_id_field)
        if run_id is not None:
            if self._runs and str(run_id) in self._runs:
                return f"{event.get(rules.type_field)} after its turn ended (run {run_id})"
            return None
        if raw is not None and rules.unique_frames and raw in self._frames:
            return f"{event.get(rules.type_field)} after its turn ended (the same frame again)"
        return None
