"""Streamed answers: TTFT, ITL, TPOT, output tokens and tokens/s from token events, as
raw fields of the turn record, as stats names, in the results and on the wire."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import msgpack
import pytest

from wsload.capacity.slo import SLO
from wsload.config.profile import ProfileError, load_profile
from wsload.config.profile_warnings import profile_warnings
from wsload.config.stream import Stream, token_counter
from wsload.errors import ConfigError
from wsload.gate import build_config
from wsload.gate.names import check_gate_names
from wsload.gate.thresholds import parse_threshold
from wsload.locust.live import LiveStats
from wsload.locust.panel import figures_html
from wsload.protocol.tracker import TurnTracker
from wsload.run.batch import Batch
from wsload.run.records import STREAM_NAMES, TurnRecord, Who, shape_samples
from wsload.run.summary import load_samples
from wsload.run.wire import decode, encode, records_of
from wsload.run.writer import ArrowWriter
from wsload.target.agent import TurnKnobs, plan_turn

PROFILE = load_profile()
USER, THREAD, RUN = "u-1", "t-1", "r-1"
SENT = 100.0


def tracker(stream: Stream | None = PROFILE.stream) -> TurnTracker:
    return TurnTracker(
        PROFILE.events,
        PROFILE.grammar,
        sent_at=SENT,
        user_id=USER,
        thread_id=THREAD,
        timeout_s=60.0,
        event_timeout_s=5.0,
        stream=stream,
    )


def event(name: str, seq: int, **fields) -> dict:
    return {"type": name, "user_id": USER, "thread_id": THREAD, "run_id": RUN, "seq": seq, **fields}


def chunk(seq: int, text: str, name: str = "stream_chunk") -> dict:
    return event(name, seq, data={"content": text})


def streamed_turn(texts: list[str], first_s: float, interval_s: float, tr=None) -> TurnTracker:
    """agent_started, agent_thinking, one chunk per text at a known pace, agent_completed."""
    tr = tr or tracker()
    frames = [(event("agent_started", 0), SENT + 0.001), (event("agent_thinking", 1), SENT + 0.002)]
    at = SENT + first_s
    for i, text in enumerate(texts):
        frames.append((chunk(2 + i, text), at + i * interval_s))
    frames.append((event("agent_completed", 99), at + len(texts) * interval_s))
    for frame, when in frames:
        if tr.feed(frame, when, json.dumps(frame, sort_keys=True)):
            break
    return tr


def record_of(tr: TurnTracker) -> TurnRecord:
    return TurnRecord(1795459291.25, Who(1, "wsload-1", "s-1"), 1, 1, 50, tr.result())


def test_token_events_give_ttft_itl_tpot_tokens_and_rate():
    tr = streamed_turn([" one", " two", " three", " four", " five"], 0.080, 0.025)
    result = tr.result()
    assert result.ok
    stream = result.stream
    assert stream is not None
    assert stream.ttft_ms == pytest.approx(80.0)
    assert stream.itl_ms == pytest.approx([25.0] * 4)
    assert stream.tokens == 5 and stream.words == 5 and stream.events == 5
    assert stream.chars == len(" one two three four five")
    assert stream.tpot_ms == pytest.approx(25.0)  # (180 - 80) / (5 - 1)
    assert stream.tokens_per_s == pytest.approx(5 / 0.180)
    # the turn's own timings are what they were without streaming
    assert result.ttfe_ms == pytest.approx(1.0)
    assert result.first_ms["stream_chunk"] == pytest.approx(80.0)


def test_words_are_counted_over_the_whole_answer_not_per_chunk():
    stream = streamed_turn(["Hel", "lo wor", "ld", "!"], 0.05, 0.01).result().stream
    assert stream is not None
    assert stream.words == 2 and stream.tokens == 2  # "Hello world!"
    assert stream.chars == len("Hello world!")
    assert stream.events == 4 and len(stream.itl_ms) == 3  # ITL is per event, not per word


def test_an_empty_text_is_no_token_event():
    """A stream that opens with an empty chunk: its first token is the first non-empty one."""
    stream = streamed_turn(["", " a", " b"], 0.05, 0.01).result().stream
    assert stream is not None
    assert stream.ttft_ms == pytest.approx(60.0)
    assert stream.events == 2 and stream.itl_ms == pytest.approx([10.0])


def test_without_a_text_field_every_token_event_is_one_token():
    tr = tracker(Stream(text_field=""))
    stream = streamed_turn(["x", "", "y"], 0.05, 0.01, tr).result().stream
    assert stream is not None
    assert stream.events == 3 and stream.tokens == 3
    assert stream.chars is None and stream.words is None


def test_the_chars_tokenizer_counts_characters():
    tr = tracker(Stream(tokenizer="chars"))
    stream = streamed_turn(["ab", "c d"], 0.05, 0.01, tr).result().stream
    assert stream is not None and stream.tokens == 5 and stream.words == 2


def test_a_turn_without_token_events_has_no_stream_samples():
    """A backend that does not stream: the same samples as before stream metrics existed."""
    streaming = record_of(streamed_turn([], 0.05, 0.01))
    off = record_of(streamed_turn([], 0.05, 0.01, tracker(Stream(events=()))))
    assert streaming.result.stream is None and streaming.ttft_ms is None
    assert list(streaming.samples()) == list(off.samples())
    assert streaming.shape() == off.shape()
    assert not {s.name for s in streaming.samples()} & set(STREAM_NAMES)


def test_stream_samples_are_stats_names_and_raw_fields():
    record = record_of(streamed_turn([" a", " b", " c"], 0.04, 0.02))
    assert record.ttft_ms == pytest.approx(40.0)
    assert record.itl_ms == pytest.approx([20.0, 20.0])
    assert record.tpot_ms == pytest.approx(20.0)
    assert record.output_tokens == 3 and record.output_words == 3 and record.output_chars == 6
    assert record.token_events == 3
    samples = [s for s in record.samples() if s.kind == "stream"]
    assert [s.name for s in samples] == [
        "turn:ttft", "turn:itl", "turn:itl", "turn:tpot", "turn:output_tokens",
        "turn:tokens_per_s",
    ]  # fmt: skip
    assert samples[4].ms == 3.0
    assert samples[5].ms == pytest.approx(3 / 0.08)
    # timings() and shape_samples() line up with samples() (the CSV and web UI fast paths)
    named = list(zip(shape_samples(record.shape()), record.timings(), strict=True))
    slow = [(s.kind, s.name, s.ms) for s in record.samples()][:-1]
    assert [(k, n, v) for (k, n), v in named] == slow


def test_a_single_token_stream_has_no_tpot():
    record = record_of(streamed_turn([" only"], 0.04, 0.02))
    assert record.tpot_ms is None and record.itl_ms == []
    names = [s.name for s in record.samples() if s.kind == "stream"]
    assert names == ["turn:ttft", "turn:output_tokens", "turn:tokens_per_s"]


def test_streamed_turns_travel_to_the_master_and_are_written_alike(tmp_path: Path):
    records = [
        record_of(streamed_turn([" a", " b", " c"], 0.04, 0.02)),
        record_of(streamed_turn([" a"], 0.03, 0.02)),
        record_of(streamed_turn([], 0.03, 0.02)),
    ]
    batch = Batch("w1")
    for record in records:
        batch.add(record, 2)
    message = msgpack.unpackb(msgpack.packb(encode(batch)))
    got = records_of(decode(message))
    for mine, theirs in zip(got, records, strict=True):  # float32 on the wire: 7 digits
        for a, b in zip(mine.samples(), theirs.samples(), strict=True):
            assert (a.kind, a.name, a.failure) == (b.kind, b.name, b.failure)
            assert a.ms == pytest.approx(b.ms, rel=1e-6)
        for name in ("ttft_ms", "itl_ms", "tpot_ms", "output_tokens", "tokens_per_s",
                     "output_chars", "output_words", "token_events"):  # fmt: skip
            want = getattr(theirs, name)
            got_value = getattr(mine, name)
            assert got_value == (want if want is None else pytest.approx(want, rel=1e-6)), name
    writer = ArrowWriter(tmp_path, "run")
    writer.write_batches(decode(message))
    writer.close()
    rows = load_samples(tmp_path)
    itl = rows[rows.name == "turn:itl"]
    assert len(itl) == 2 and (itl.kind == "stream").all()
    assert sorted(rows[rows.name == "turn:output_tokens"].ms) == [1.0, 3.0]
    assert len(rows[rows.name == "turn:ttft"]) == 2


def test_a_profile_with_its_own_grammar_does_not_inherit_the_token_events(tmp_path: Path):
    own = tmp_path / "own.toml"
    own.write_text('[events]\nsequence = "start delta+ done"\nterminal = ["done"]\n')
    assert load_profile(own).stream.events == ()
    named = tmp_path / "named.toml"
    named.write_text(
        '[events]\nsequence = "start delta+ done"\nterminal = ["done"]\n'
        '[stream]\nevents = ["delta"]\ntext_field = "text"\n'
    )
    assert load_profile(named).stream == Stream(events=("delta",), text_field="text")


@pytest.mark.parametrize(
    ("section", "key", "problem"),
    [
        ('tokenizer = "bpe"', "stream.tokenizer", "not one of whitespace"),
        ('events = ["heartbeat"]', "stream.events", "events.ignore"),
        ('events = [""]', "stream.events", "empty"),
        ("events = 3", "stream.events", "must be a list"),
    ],
)
def test_a_bad_stream_section_is_named(tmp_path: Path, section, key, problem):
    path = tmp_path / "bad.toml"
    path.write_text(f"[stream]\n{section}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert caught.value.key == key and problem in caught.value.problem


def test_a_tokenizer_that_cannot_load_is_a_config_error_with_the_fix():
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError) as caught:
            token_counter("tiktoken:cl100k_base")
        assert "tiktoken" in str(caught.value) and "whitespace" in caught.value.fix
    else:
        with pytest.raises(ConfigError) as caught:
            token_counter("tiktoken:no_such_encoding")
        assert "no_such_encoding" in str(caught.value)


def test_the_default_profile_names_the_default_protocols_token_events():
    assert PROFILE.stream.events == ("stream_chunk", "partial_result")
    assert PROFILE.stream.text_field == "data.content"
    assert dataclasses.asdict(PROFILE)["stream"]["tokenizer"] == "whitespace"


def test_the_reference_target_plans_a_streamed_answer_at_known_offsets():
    knobs = TurnKnobs(
        ttfe_s=0.05, gap_s=0.01, thinking_steps=1, tools=0, stream_tokens=4, token_interval_s=0.02
    )
    plan = plan_turn(knobs)
    names = [event["type"] for _, event in plan]
    assert names == ["agent_started", "agent_thinking", *["stream_chunk"] * 4, "agent_completed"]
    chunks = [(offset, event) for offset, event in plan if event["type"] == "stream_chunk"]
    assert [round(offset, 6) for offset, _ in chunks] == [0.07, 0.09, 0.11, 0.13]
    answer = "".join(event["data"]["content"] for _, event in chunks)
    assert answer == "token1 token2 token3 token4"
    assert plan[-1][1]["data"]["events"] == knobs.event_count == 7
    assert not TurnKnobs(ttfe_s=0, gap_s=0, tool_duration_s=0, token_interval_s=0.01).instant


@pytest.mark.parametrize(
    "text",
    [
        "turn:itl p99 < 50ms",
        "turn:ttft p50 <= 1s",
        "turn:tokens_per_s p50 >= 20/s",
        "turn:output_tokens mean >= 7.5",
        "turn:tokens_per_s min > 5/s abort",
    ],
)
def test_stream_thresholds_parse_with_the_units_of_their_values(text):
    threshold = parse_threshold(text)
    assert parse_threshold(str(threshold)) == threshold


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("turn:tokens_per_s p50 > 20ms", "'ms' does not fit"),
        ("turn:output_tokens p50 > 20s", "is a count: it takes no unit"),
        ("turn:itl p99 < 50", "needs a unit"),
    ],
)
def test_stream_thresholds_with_the_wrong_unit_are_refused(text, problem):
    with pytest.raises(ConfigError) as caught:
        parse_threshold(text)
    assert problem in str(caught.value)


def test_stream_names_are_known_only_to_profiles_that_stream(tmp_path: Path):
    config = build_config(thresholds=["turn:itl p99 < 50ms", "turn:tokens_per_s p50 > 1/s"])
    check_gate_names(config, PROFILE)
    own = tmp_path / "own.toml"
    own.write_text('[events]\nsequence = "start delta+ done"\nterminal = ["done"]\n')
    with pytest.raises(ConfigError, match="turn:itl"):
        check_gate_names(config, load_profile(own))
    with pytest.raises(ConfigError, match="not a time"):
        check_gate_names(build_config(goodput_limits=["turn:output_tokens=1s"]), PROFILE)
    check_gate_names(build_config(goodput_limits=["turn:ttft=1s", "turn:tpot=50ms"]), PROFILE)


def test_an_example_turn_without_text_where_the_profile_looks_is_warned_about(tmp_path: Path):
    frames = [
        '{"type":"agent_started","user_id":"u","thread_id":"t"}',
        '{"type":"stream_chunk","user_id":"u","thread_id":"t","data":{"text":"Hi"}}',
        '{"type":"agent_completed","user_id":"u","thread_id":"t"}',
    ]
    path = tmp_path / "p.toml"
    path.write_text("[examples]\nturn = [" + ", ".join(f"'{f}'" for f in frames) + "]\n")
    (warning,) = [w for w in profile_warnings(load_profile(path)) if "stream" in w]
    assert "stream.text_field 'data.content'" in warning and "stream_chunk" in warning
    path.write_text(path.read_text() + '[stream]\ntext_field = "data.text"\n')
    assert not [w for w in profile_warnings(load_profile(path)) if "stream" in w]


def test_the_web_ui_headline_shows_ttft_and_itl_once_a_turn_was_streamed(tmp_path: Path):
    plain = LiveStats()
    plain.add_records([record_of(streamed_turn([], 0.05, 0.01))])
    assert plain.headline()["ttft"] is None and 'data-figure="ttft"' not in figures_html(
        plain.headline()
    )
    live = LiveStats()
    records = [
        record_of(streamed_turn([" a", " b", " c"], 0.04 + i / 1000, 0.02)) for i in range(9)
    ]
    live.add_records(records)
    head = live.headline()
    batch = Batch("n")
    for record in records:
        batch.add(record, 1)
    writer = ArrowWriter(tmp_path, "run")
    writer.write(batch)
    writer.close()
    rows = load_samples(tmp_path)
    assert head["ttft"]["median"] == round(rows[rows.name == "turn:ttft"].ms.median(), 1)
    assert head["itl"]["p99"] == round(rows[rows.name == "turn:itl"].ms.quantile(0.99), 1)
    html = figures_html(head)
    assert 'data-figure="ttft"' in html and "ms ITL p50/p99" in html


def test_capacity_slo_limits_ttft_and_itl_only_when_given():
    p95 = {"turn:e2e": 100.0, "connect": 5.0, "auth": 5.0, "turn:ttft": 900.0, "turn:itl": 80.0}
    assert SLO().breaches(p95, 0.0) == []
    assert "turn:ttft" not in SLO().describe()
    slo = SLO(ttft_p95_ms=500.0, itl_p95_ms=50.0)
    assert slo.breaches(p95, 0.0) == ["turn:ttft p95 900 ms > 500 ms", "turn:itl p95 80 ms > 50 ms"]
    assert slo.breaches({**p95, "turn:ttft": float("nan"), "turn:itl": 20.0}, 0.0) == []
    assert "p95 turn:ttft ≤ 500 ms" in slo.describe()
