"""Threshold grammar: round trips, strict units, carets under the wrong character, TOML."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.errors import ConfigError
from wsload.gate.config import DEFAULT_GOODPUT_MS, GateConfig, build_config, load_threshold_file
from wsload.gate.threshold_model import (
    STAT_WORDS,
    Metric,
    Threshold,
    ThresholdError,
    abort_problem,
    failure_stage,
    is_failure_id,
)
from wsload.gate.thresholds import parse_duration, parse_threshold

# strategies ---------------------------------------------------------------------------------
FAILURE_IDS = [
    "refused",
    "tcp_timeout",
    "http_503",
    "auth_rejected",
    "closed_1008",
    "identity_mismatch",
    "sequence_order",
    "disconnected_1006",
    "auth_not_enforced",
    "protocol_error",
]
_segment = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)


def _usable_name(name: str) -> bool:
    last = name.rpartition(".")[2]
    return not (
        is_failure_id(name)
        or is_failure_id(last)
        or name in ("turn", "probe", "all", "goodput")
        or name.startswith(("turn.", "probe.", "all.", "goodput."))
    )


names = st.one_of(
    st.sampled_from(["connect", "auth", "disconnect", "turn:e2e", "turn:ttfe", "turn:gap"]),
    st.builds(
        lambda prefix, a, b: f"{prefix}{a}" + (f".{b}" if b else ""),
        st.sampled_from(["turn:", "probe:", ""]),
        _segment,
        st.none() | _segment,
    ),
).filter(_usable_name)
percentiles = st.decimals(min_value=0, max_value=100, places=2).map(
    lambda d: "p" + format(d.normalize(), "f")
)
time_stats = st.one_of(percentiles, st.sampled_from(["min", "max", "mean"]))


def metrics() -> st.SearchStrategy[Metric]:
    scoped = names | st.sampled_from(["turn", "probe"])
    countable = scoped | st.just("all")
    failure_scope = st.none() | countable
    return st.one_of(
        st.builds(Metric, scoped, time_stats),
        st.builds(
            Metric, countable, st.sampled_from(["count", "failures", "failure_rate", "rate"])
        ),
        st.builds(
            Metric,
            failure_scope,
            st.sampled_from(["count", "rate", "failure_rate"]),
            st.sampled_from(FAILURE_IDS),
        ).filter(
            lambda m: (
                not (m.stat == "failure_rate" and m.scope is None and not failure_stage(m.failure))
            )
        ),
        st.builds(Metric, st.just("goodput"), st.sampled_from(["share", "rate", "count"])),
    )


@st.composite
def thresholds(draw: st.DrawFn) -> Threshold:
    metric = draw(metrics())
    op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
    kind = metric.kind
    if kind == "count":
        value = Decimal(draw(st.integers(0, 10**6)))
        unit = ""
    elif kind == "share":
        value = draw(st.decimals(min_value=0, max_value=100, places=3))
        unit = "%"
    else:
        value = draw(st.decimals(min_value=0, max_value=10**6, places=3))
        unit = draw(st.sampled_from(["ms", "s"])) if kind == "time" else "/s"
    abort = abort_problem(metric, op) is None and draw(st.booleans())
    return Threshold(metric, op, value, unit, abort=abort, optional=draw(st.booleans()))


def spaced(text_parts: list[str], gaps: list[str]) -> str:
    return "".join(part + gap for part, gap in zip(text_parts, gaps, strict=True))


# round trips --------------------------------------------------------------------------------
@settings(max_examples=400)
@given(thresholds())
def test_canonical_text_parses_back_to_the_same_threshold(threshold):
    text = str(threshold)
    assert parse_threshold(text) == threshold
    assert str(parse_threshold(text)) == text


@settings(max_examples=300)
@given(thresholds(), st.lists(st.sampled_from([" ", "  ", "\t"]), min_size=4, max_size=4))
def test_spacing_around_the_parts_does_not_change_the_threshold(threshold, gaps):
    metric = str(threshold.metric)
    parts = [metric, threshold.op, threshold.value_text]
    parts += [m for m in ("abort", "optional") if getattr(threshold, m)]
    text = " " + " ".join(parts[:1]) + gaps[0] + threshold.op + gaps[1] + threshold.value_text
    text += "".join(gaps[2] + m for m in parts[3:]) + gaps[3]
    assert parse_threshold(text) == threshold


@given(names, time_stats)
def test_dot_and_space_before_a_statistic_mean_the_same(name, stat):
    assert parse_threshold(f"{name}.{stat} < 1s") == parse_threshold(f"{name} {stat} < 1s")


@pytest.mark.parametrize(
    ("text", "scope", "stat", "failure", "limit"),
    [
        ("turn:e2e p95 < 5s", "turn:e2e", "p95", None, 5000),
        ("connect p99.9 <= 800ms", "connect", "p99.9", None, 800),
        ("auth mean < 100ms", "auth", "mean", None, 100),
        ("turn:ttfe max < 2s", "turn:ttfe", "max", None, 2000),
        ("auth.failure_rate < 1%", "auth", "failure_rate", None, Decimal("0.01")),
        ("connect.failure_rate <= 0.5%", "connect", "failure_rate", None, Decimal("0.005")),
        ("refused.count == 0", None, "count", "refused", 0),
        ("refused == 0", None, "count", "refused", 0),
        ("auth_rejected.rate < 0.1/s", None, "rate", "auth_rejected", Decimal("0.1")),
        ("turn.rate >= 10/s", "turn", "rate", None, 10),
        ("turn:e2e.count >= 100", "turn:e2e", "count", None, 100),
        ("goodput >= 95%", "goodput", "share", None, Decimal("0.95")),
        ("goodput.rate >= 2/s", "goodput", "rate", None, 2),
        ("probe.auth_not_enforced == 0", "probe", "count", "auth_not_enforced", 0),
        ("identity_mismatch.count == 0", None, "count", "identity_mismatch", 0),
        ("turn:run.start p95 < 1s", "turn:run.start", "p95", None, 1000),
        ("turn:run.start.count > 3", "turn:run.start", "count", None, 3),
        (
            "auth.closed_1008.failure_rate < 2%",
            "auth",
            "failure_rate",
            "closed_1008",
            Decimal("0.02"),
        ),
        ("connect.p95 < 500ms", "connect", "p95", None, 500),
    ],
)
def test_the_documented_forms_parse_to_their_metric_and_exact_limit(
    text, scope, stat, failure, limit
):
    threshold = parse_threshold(text)
    assert threshold.metric == Metric(scope, stat, failure)
    assert threshold.limit == Decimal(limit)


def test_limits_compare_exactly_in_base_units():
    assert parse_threshold("x p95 < 0.3s").limit == 300
    assert parse_threshold("x p95 <= 100.123ms").holds(float("100.123"))
    assert parse_threshold("x.failure_rate <= 7%").holds(Decimal(7) / 100)


def test_markers_set_abort_and_optional_in_any_order():
    threshold = parse_threshold("refused.count <= 3 optional abort")
    assert threshold.abort and threshold.optional
    assert str(threshold) == "refused.count <= 3 abort optional"


# errors -------------------------------------------------------------------------------------
def caret_of(error: ThresholdError) -> int:
    lines = str(error).splitlines()
    return lines[2].index("^") - 4


@pytest.mark.parametrize(
    ("text", "at", "words"),
    [
        ("turn:e2e p95 < 5sec", 16, "unknown unit 'sec'"),
        ("turn:e2e p95 < 5", 16, "needs a unit"),
        ("turn:e2e p95 < 5%", 16, "does not fit"),
        ("auth.failure_rate < 1", 21, "needs a unit"),
        ("auth.failure_rate < 1ms", 21, "does not fit"),
        ("turn.rate >= 10%", 15, "does not fit"),
        ("turn.rate >= 10", 15, "needs a unit"),
        ("refused.count == 0ms", 18, "takes no unit"),
        ("refused.count == 0.5", 17, "whole number"),
        ("goodput >= 101%", 11, "at most 100%"),
        ("turn:e2e p95 < 5 s", 16, "needs a unit"),
        ("connect p95 = 5s", 12, "'=' is not a comparison"),
        ("connect p95 5s", 12, "expected a comparison"),
        ("connect p95 <", 13, "missing limit"),
        ("connect p95 < -1s", 14, "no sign"),
        ("connect p95 < .5s", 14, "digit before the point"),
        ("connect p96x < 1s", 8, "unknown statistic"),
        ("connect p101 < 1s", 9, "above 100"),
        ("connect < 1s", 7, "missing statistic"),
        ("auth.failrate < 1%", 5, "not a statistic"),
        ("conn@ect p95 < 1s", 4, "unexpected '@'"),
        ("connect p95 << 1s", 13, "unexpected '<'"),
        ("connect p95 < 1s abrt", 17, "unexpected 'abrt'"),
        ("connect p95 < 1s abort", 17, "'abort' does not fit"),
        ("auth.failure_rate < 1% abort", 23, "'abort' does not fit"),
        ("refused.count >= 1 abort", 19, "'abort' does not fit"),
        ("goodput.count < 5 abort", 18, "'abort' does not fit"),
        ("connect p95 < 1s optional optional", 26, "given twice"),
        ("refused p95 < 1s", 8, "failure id"),
        ("protocol_error.failure_rate < 1%", 0, "more than one stage"),
        ("all p95 < 1s", 4, "mixes"),
        ("goodput p95 < 1s", 8, "goodput has no p95"),
        ("", 0, "empty threshold"),
        ("   ", 3, "empty threshold"),
    ],
)
def test_a_bad_threshold_names_the_problem_with_a_caret_under_it(text, at, words):
    with pytest.raises(ThresholdError) as caught:
        parse_threshold(text)
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.position == at, str(error)
    assert words in str(error)
    assert text.strip() in str(error)
    assert caret_of(error) == at


_CORRUPTIONS = st.sampled_from(list("@#$^&*()[]{}!=<>|~?,;'\"-+.%/ 0123456789abcpsmx:\t"))


@st.composite
def corrupted(draw: st.DrawFn) -> str:
    text = str(draw(thresholds()))
    how = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
    at = draw(st.integers(0, len(text) - 1))
    if how == "insert":
        return text[:at] + draw(_CORRUPTIONS) + text[at:]
    if how == "delete":
        return text[:at] + text[at + 1 :]
    if how == "replace":
        return text[:at] + draw(_CORRUPTIONS) + text[at + 1 :]
    return text[:at]


@settings(max_examples=600)
@given(corrupted())
def test_a_corrupted_threshold_parses_or_fails_with_a_caret_inside_it(text):
    try:
        threshold = parse_threshold(text)
    except ThresholdError as error:
        assert 0 <= error.position <= len(text)
        assert caret_of(error) == error.position
        assert "".join(" " if c.isspace() else c for c in text) in str(error)
    else:
        assert parse_threshold(str(threshold)) == threshold


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_any_text_parses_or_fails_with_a_config_error(text):
    try:
        parse_threshold(text)
    except ThresholdError as error:
        assert 0 <= error.position <= len(text)


@given(thresholds(), st.sampled_from(["sec", "mins", "pct", "/min", "ms/s", "x"]))
def test_a_unit_outside_the_grammar_is_refused_at_the_unit(threshold, unit):
    text = f"{threshold.metric} {threshold.op} {threshold.value_text.rstrip('ms/%')}{unit}"
    with pytest.raises(ThresholdError) as caught:
        parse_threshold(text)
    assert caught.value.position == text.rindex(unit)


def test_every_stat_word_parses_into_its_own_statistic_with_its_unit():
    for stat in STAT_WORDS:
        kind_unit = {"count": "", "failures": "", "failure_rate": "%", "rate": "/s"}.get(stat, "s")
        threshold = parse_threshold(f"connect.{stat} < 1{kind_unit}")
        assert threshold.metric == Metric("connect", stat)
        assert (
            threshold.unit == kind_unit and str(threshold) == f"{threshold.metric} < 1{kind_unit}"
        )


# durations, files, configuration ------------------------------------------------------------
def test_durations_need_a_unit():
    assert parse_duration("10s", "--warmup") == 10.0
    assert parse_duration("250ms", "--warmup") == 0.25
    for bad in ("10", "10 m", "-1s", "s", "1.s"):
        with pytest.raises(ConfigError, match="not a duration"):
            parse_duration(bad, "--warmup")


def test_security_defaults_are_on_abort_and_can_be_restated_or_switched_off():
    on = GateConfig(run_checks=False)
    texts = [str(t) for t in on.effective()]
    assert texts == [
        "probe.auth_not_enforced == 0 abort",
        "identity_mismatch.count == 0 abort",
        "foreign_event.count == 0 abort",
    ]
    restated = GateConfig(
        thresholds=(parse_threshold("identity_mismatch.count <= 2"),), run_checks=False
    )
    assert [str(t) for t in restated.effective()] == [
        "identity_mismatch.count <= 2",
        "probe.auth_not_enforced == 0 abort",
        "foreign_event.count == 0 abort",
    ]
    assert GateConfig(security=False, run_checks=False).effective() == ()
    assert [t.label for t in GateConfig(security=False).effective()] == [
        "run: connections",
        "run: sessions",
        "run: connects",
        "run: generator",
    ]


def test_a_thresholds_file_sets_thresholds_goodput_limits_warmup_and_security(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(
        'warmup = "5s"\n'
        "security = false\n"
        "[goodput]\n"
        '"turn:gap" = "100ms"\n'
        '"turn:ttfe" = "off"\n'
        "[[threshold]]\n"
        'expression = "turn:e2e p95 < 5s"\n'
        'description = "whole turn"\n'
        "[[threshold]]\n"
        'metric = "refused.count"\n'
        'condition = "== 0"\n'
        "abort = true\n"
        "[[threshold]]\n"
        'expression = "connect p95 < 1s"\n'
        "optional = true\n"
    )
    config = build_config(file=path, thresholds=["turn.rate >= 1/s"])
    assert [str(t) for t in config.thresholds] == [
        "turn:e2e p95 < 5s",
        "refused.count == 0 abort",
        "connect p95 < 1s optional",
        "turn.rate >= 1/s",
    ]
    assert config.thresholds[0].description == "whole turn"
    assert config.warmup_s == 5.0
    assert config.security is False
    assert config.goodput_limits_ms == {"turn:e2e": 60000.0, "turn:gap": 100.0}


def test_the_command_line_beats_the_file(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text('warmup = "5s"\nsecurity = false\n')
    config = build_config(
        file=path, warmup="1s", security=True, goodput_limits=["turn:gap=250ms", "turn:e2e=off"]
    )
    assert config.warmup_s == 1.0
    assert config.security is True
    assert config.goodput_limits_ms == {"turn:ttfe": 5000.0, "turn:gap": 250.0}
    assert build_config().goodput_limits_ms == DEFAULT_GOODPUT_MS


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('[[thresholds]]\nexpression = "a p95 < 1s"\n', "did you mean 'threshold'"),
        ('[[threshold]]\nexpresion = "a p95 < 1s"\n', "did you mean 'expression'"),
        ("[[threshold]]\nabort = true\n", "no threshold in it"),
        ('[[threshold]]\nexpression = "a p95 < 1"\n', "[[threshold]] #1"),
        ('[[threshold]]\nexpression = "a p95 < 1s"\nabort = true\n', "'abort' does not fit"),
        ('[[threshold]]\nexpression = "a p95 < 1s"\nabort = "yes"\n', "true or false"),
        ("warmup = 10\n", "not a duration"),
        ('[goodput]\n"turn:gap" = 1\n', "not a duration"),
        ("threshold = 3\n", "array of tables"),
        ("[[threshold]\n", "not valid TOML"),
    ],
)
def test_a_bad_thresholds_file_names_the_file_and_the_problem(tmp_path, content, words):
    path = tmp_path / "gate.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_threshold_file(path)
    assert words in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_thresholds_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the thresholds file"):
        build_config(file=tmp_path / "nope.toml")


def test_failure_ids_belong_to_the_stage_their_rate_is_a_share_of():
    assert failure_stage("refused") == "connect"
    assert failure_stage("http_401") == "connect"
    assert failure_stage("closed_1011") == "auth"
    assert failure_stage("disconnected_1006") == "turn"
    assert failure_stage("auth_not_enforced") == "probe"
    assert failure_stage("protocol_error") is None
