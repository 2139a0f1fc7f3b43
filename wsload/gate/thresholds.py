"""Gate thresholds: the grammar and its canonical text (the model is in threshold_model.py).

A threshold is one line a CI job holds a run to, e.g. ``turn:e2e p95 < 5s``. Parsing is
strict (a unit that does not fit the metric is an error) because a gate that quietly reads
``< 5`` as 5 ms, or ``< 1`` as 1 % when 1/s was meant, passes runs it should fail. Every
error quotes the threshold with a caret under the offending character.

Metric forms (``NAME`` is a stats name such as ``connect`` or ``turn:e2e``; ``ID`` a
taxonomy id such as ``refused``)::

    NAME pNN | pNN.N | min | max | mean      time of the successful samples, in ms or s
    NAME.count | NAME.failures               samples (ok and failed) | failed samples
    NAME.failure_rate                        failed share of the samples, in %
    NAME.rate                                successful samples per second, in /s
    ID.count | ID.rate | ID.failure_rate     samples failed with ID (per second | share)
    NAME.ID [.count | .rate | .failure_rate] the same within one stats name or group
    goodput | goodput.rate | goodput.count   turns meeting every per-stage service level

The dot and the space before a statistic are interchangeable (``connect.p95``). Groups:
``turn`` is the turn (its ``turn:e2e`` row), ``probe`` every ``probe:*`` name, ``all`` every
sample, ``conformance`` every ``conformance:*`` name (handshake-conformance probes). Markers
after the limit: ``abort`` (stop the run as soon as the threshold can no longer be met) and
``optional`` (a check that measured nothing is not a failure).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from decimal import Decimal
from typing import NoReturn

from wsload.errors import ConfigError
from wsload.gate.threshold_model import (
    ALL,
    FAILURE_IDS,
    GOODPUT,
    KIND_WORDS,
    MARKERS,
    PERCENTILE,
    STAT_WORDS,
    UNITS_BY_KIND,
    Metric,
    Threshold,
    ThresholdError,
    abort_problem,
    failure_stage,
    format_decimal,
    is_failure_id,
    is_percentile,
)
from wsload.gate.threshold_model import TURN_NAME as TURN_NAME

_ALL_UNITS = ("ms", "s", "%", "/s")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)(ms|s)\s*\Z", re.ASCII)
_NAME = re.compile(r"[\w:.\-/+]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_OP = re.compile(r"<=|>=|==|!=|<|>")
_STAT_SUFFIX = re.compile(r"\.(p\d+(?:\.\d+)?|min|max|mean|count|failures|failure_rate|rate)\Z")
_WORD = re.compile(r"[A-Za-z_][\w.\-]*")
_EXAMPLES = "e.g. 'turn:e2e p95 < 5s', 'auth.failure_rate < 1%', 'refused.count == 0'"


class _Parser:
    """Recursive-descent over one threshold, tracking the position for error carets."""

    def __init__(self, text: str, origin: str) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.origin = origin

    def fail(self, position: int, problem: str, fix: str | None = None) -> NoReturn:
        raise ThresholdError(self.text, position, problem, origin=self.origin, fix=fix)

    def skip_space(self) -> None:
        while self.i < self.n and self.text[self.i].isspace():
            self.i += 1

    def char(self) -> str:
        return self.text[self.i] if self.i < self.n else ""

    def parse(self, description: str) -> Threshold:
        self.skip_space()
        if self.i == self.n:
            self.fail(self.i, "empty threshold", fix=f"write one, {_EXAMPLES}")
        metric = self.metric()
        op = self.operator()
        self.skip_space()
        number_at = self.i
        value = self.number()
        unit_at = self.i
        unit = self.unit()
        self.check_unit(metric, value, unit, number_at, unit_at)
        markers = self.markers()
        if "abort" in markers and (problem := abort_problem(metric, op)):
            self.fail(
                markers["abort"],
                f"'abort' does not fit {metric} {op}: {problem}",
                fix="abort works on counts (<, <=, ==), max (<, <=) and min (>, >=); "
                "drop 'abort' here, the end-of-run verdict still applies",
            )
        return Threshold(
            metric,
            op,
            value,
            unit,
            abort="abort" in markers,
            optional="optional" in markers,
            description=description,
            origin=self.origin,
        )

    # metric ----------------------------------------------------------------------------
    def metric(self) -> Metric:
        start = self.i
        match = _NAME.match(self.text, start)
        if not match:
            self.fail(start, f"expected a metric, found {self.char()!r}", fix=_EXAMPLES)
        token = match.group()
        self.i = match.end()
        self.expect_boundary("the metric")
        self.skip_space()
        stat: str | None = None
        stat_at = start
        word = _WORD.match(self.text, self.i)
        if word:
            stat_at = self.i
            stat = word.group()
            self.i = word.end()
            if not (is_percentile(stat) or stat in STAT_WORDS):
                self.fail(stat_at, f"unknown statistic {stat!r}", fix=_stat_fix(stat))
            self.expect_boundary("the statistic")
        return self.resolve(token, start, stat, stat_at)

    def expect_boundary(self, what: str) -> None:
        c = self.char()
        if c and not c.isspace() and c not in "<>=!":
            self.fail(self.i, f"unexpected {c!r} after {what}")

    def resolve(self, token: str, start: int, stat: str | None, stat_at: int) -> Metric:
        scope_text = token
        if stat is None:
            suffix = _STAT_SUFFIX.search(token)
            if suffix and suffix.start() > 0:
                stat = suffix.group(1)
                stat_at = start + suffix.start(1)
                scope_text = token[: suffix.start()]
        failure: str | None = None
        scope: str | None = scope_text
        head, dot, last = scope_text.rpartition(".")
        if dot and head and is_failure_id(last):
            failure, scope = last, head
        elif is_failure_id(scope_text):
            failure, scope = scope_text, None
        if scope is not None and is_failure_id(scope):
            self.fail(start, f"{scope!r} is a failure id: name a stats name before .{failure}")
        if scope == GOODPUT:
            stat = stat or "share"
            if stat not in ("share", "rate", "count"):
                self.fail(
                    stat_at,
                    f"goodput has no {stat}",
                    fix="use goodput (share of good turns, %), goodput.rate (/s) or goodput.count",
                )
        elif failure is not None:
            stat = stat or "count"
            if stat not in ("count", "rate", "failure_rate"):
                self.fail(
                    stat_at,
                    f"{failure} is a failure id: it has count, rate and failure_rate, not {stat}",
                    fix="times are over successful samples: put the stats name first, "
                    f"e.g. 'auth {stat}'",
                )
            if stat == "failure_rate" and scope is None and failure_stage(failure) is None:
                self.fail(
                    start,
                    f"{failure} occurs in more than one stage, so its failure rate needs one",
                    fix=f"name it: auth.{failure}.failure_rate or frame.{failure}.failure_rate",
                )
        elif stat is None:
            self.missing_stat(token, start)
        if scope is not None and not scope:
            self.fail(start, "empty stats name before the statistic")
        assert stat is not None
        if is_percentile(stat):
            stat = self.percentile(stat, stat_at)
        metric = Metric(scope, stat, failure)
        if scope == ALL and metric.kind == "time":
            self.fail(
                stat_at,
                f"{stat} over every sample mixes connects with whole turns",
                fix="name a stats name, e.g. 'turn:e2e p95 < 5s'",
            )
        return metric

    def missing_stat(self, token: str, start: int) -> NoReturn:
        head, dot, last = token.rpartition(".")
        if dot and head and last:
            guess = difflib.get_close_matches(last, [*STAT_WORDS, *sorted(FAILURE_IDS)], n=1)
            if guess:
                self.fail(
                    start + len(head) + 1,
                    f"{last!r} is not a statistic or failure id",
                    fix=f"did you mean {head}.{guess[0]}? (or add a statistic: {token} p95)",
                )
        self.fail(
            start + len(token),
            f"missing statistic after {token!r}",
            fix="add one: p95, p99.9, min, max, mean, count, failures, failure_rate or rate",
        )

    def percentile(self, stat: str, at: int) -> str:
        match = PERCENTILE.match(stat)
        assert match is not None
        q = Decimal(match.group(1))
        if q > 100:
            self.fail(at + 1, f"percentile {stat} is above 100", fix="use p50 .. p99.9 or max")
        return f"p{format_decimal(q)}"

    # comparison and limit -----------------------------------------------------------------
    def operator(self) -> str:
        self.skip_space()
        match = _OP.match(self.text, self.i)
        if not match:
            c = self.char()
            if not c:
                self.fail(self.i, "missing comparison after the metric", fix=_EXAMPLES)
            if c == "=":
                self.fail(self.i, "'=' is not a comparison", fix="use ==, <= or >=")
            self.fail(self.i, f"expected a comparison (<, <=, >, >=, ==, !=), found {c!r}")
        self.i = match.end()
        if self.char() and self.char() in "<>=!":
            self.fail(self.i, f"unexpected {self.char()!r} after {match.group()!r}")
        return match.group()

    def number(self) -> Decimal:
        match = _NUMBER.match(self.text, self.i)
        c = self.char()
        if not match:
            if not c:
                self.fail(self.i, "missing limit after the comparison", fix=_EXAMPLES)
            if c in "-+":
                self.fail(self.i, "a limit has no sign", fix="write e.g. 0 or 5s")
            if c == ".":
                self.fail(self.i, "a number needs a digit before the point", fix="write 0.5")
            self.fail(self.i, f"expected a number, found {c!r}", fix=_EXAMPLES)
        self.i = match.end()
        return Decimal(match.group())

    def unit(self) -> str:
        start = self.i
        while self.i < self.n and not self.text[self.i].isspace():
            self.i += 1
        return self.text[start : self.i]

    def check_unit(
        self, metric: Metric, value: Decimal, unit: str, number_at: int, unit_at: int
    ) -> None:
        kind = metric.unit_kind
        allowed = UNITS_BY_KIND[kind]
        wants = " or ".join(u for u in allowed if u) or "no unit"
        if unit not in allowed:
            if unit.startswith("."):
                self.fail(unit_at, "a number needs a digit after the point")
            if kind == "count":
                self.fail(unit_at, f"{metric} is a count: it takes no unit, found {unit!r}")
            if not unit:
                after = self.text[self.i :].strip().split(" ")[0]
                fix = f"write it right after the number: {format_decimal(value)}{after}"
                self.fail(
                    unit_at,
                    f"{metric} is {KIND_WORDS[kind]}: the limit needs a unit ({wants})",
                    fix=fix
                    if after in _ALL_UNITS
                    else "write e.g. "
                    + " or ".join(f"{format_decimal(value)}{u}" for u in allowed),
                )
            if unit in _ALL_UNITS:
                self.fail(unit_at, f"{unit!r} does not fit {metric}, {KIND_WORDS[kind]} ({wants})")
            self.fail(unit_at, f"unknown unit {unit!r}: {metric} takes {wants}")
        if metric.kind == "count" and value != value.to_integral_value():
            self.fail(number_at, f"{metric} is a count: the limit is a whole number")
        if kind == "share" and value > 100:
            self.fail(number_at, "a share is at most 100%")

    def markers(self) -> dict[str, int]:
        seen: dict[str, int] = {}
        while True:
            self.skip_space()
            if self.i == self.n:
                return seen
            at = self.i
            word = _WORD.match(self.text, at)
            if not word:
                self.fail(at, f"unexpected {self.char()!r} after the limit")
            self.i = word.end()
            text = word.group()
            if text in MARKERS:
                if text in seen:
                    self.fail(at, f"{text!r} is given twice")
                seen[text] = at
                self.expect_boundary(repr(text))
            elif text in _ALL_UNITS or text in ("sec", "secs", "msec", "pct", "percent"):
                self.fail(at, f"{text!r} is apart from its number", fix="write e.g. 5s or 1%")
            else:
                self.fail(
                    at,
                    f"unexpected {text!r} after the limit",
                    fix="only the markers 'abort' and 'optional' may follow the limit",
                )


def _stat_fix(word: str) -> str:
    guess = difflib.get_close_matches(word, [*STAT_WORDS, "p95", "p99", "p50"], n=1)
    hint = f"did you mean {guess[0]}? " if guess else ""
    return hint + "statistics: p50 .. p99.9, min, max, mean, count, failures, failure_rate, rate"


def parse_threshold(
    text: str,
    *,
    origin: str = "command line",
    description: str = "",
    implicit: bool = False,
    label: str = "",
) -> Threshold:
    """Parse one threshold; ``ThresholdError`` (a ``ConfigError``) points at what is wrong."""
    threshold = _Parser(text, origin).parse(description)
    if implicit or label:
        threshold = dataclasses.replace(threshold, implicit=implicit, label=label)
    return threshold


# durations and goodput limits ---------------------------------------------------------------
def parse_duration(text: object, what: str) -> float:
    """Seconds from ``10s`` or ``500ms``; a bare number is an error (which unit was meant?)."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise ConfigError(
            f"{what}: {text!r} is not a duration",
            fix="write a number with ms or s right after it, e.g. 10s or 500ms",
        )
    seconds = Decimal(match.group(1)) * (Decimal("0.001") if match.group(2) == "ms" else 1)
    return float(seconds)


def parse_goodput_limit(text: str) -> tuple[str, float | None]:
    """``NAME=DURATION`` (or ``NAME=off``) -> (name, ms or None to drop the limit)."""
    name, eq, value = text.partition("=")
    name = name.strip()
    if not eq or not name:
        raise ConfigError(
            f"--goodput-limit {text!r} is not NAME=DURATION",
            fix="e.g. --goodput-limit turn:gap=100ms (or turn:gap=off)",
        )
    if value.strip() == "off":
        return name, None
    return name, parse_duration(value, f"goodput limit {name}") * 1000.0
