"""Think-time distributions, reconnect backoff and message corpora."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsload.config.corpus import BUILT_IN, load_corpus
from wsload.config.pacing import Backoff, parse_think_time
from wsload.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "mean"),
    [("1.5", 1.5), ("constant:2", 2.0), ("uniform:1:3", 2.0), ("exp:0.5", 0.5)],
)
def test_think_time_samples_have_the_stated_mean(text, mean):
    think = parse_think_time(text)
    rng = random.Random(7)
    samples = [think.sample(rng) for _ in range(20000)]
    assert think.mean == mean
    assert statistics.fmean(samples) == pytest.approx(mean, rel=0.03)
    assert min(samples) >= 0


@pytest.mark.parametrize("bad", ["", "gauss:1", "uniform:3:1", "uniform:1", "exp:-1", "fast"])
def test_a_bad_think_time_names_the_accepted_forms(bad):
    with pytest.raises(ConfigError, match="think-time"):
        parse_think_time(bad)


@given(st.integers(0, 100), st.floats(0.01, 5), st.floats(5, 60))
def test_backoff_never_exceeds_its_bound(attempt, base, ceiling):
    delay = Backoff(base, ceiling).delay(attempt, random.Random(attempt))
    assert 0 <= delay <= min(ceiling, base * 2**attempt) + 1e-9


def test_backoff_grows_until_the_bound():
    rng = random.Random(1)
    means = [statistics.fmean(Backoff(0.5, 4).delay(a, rng) for _ in range(2000)) for a in range(6)]
    assert means[0] < means[1] < means[2] < means[3]
    assert means[4] == pytest.approx(2.0, rel=0.1) and means[5] == pytest.approx(2.0, rel=0.1)


def test_the_built_in_corpus_and_text_files(tmp_path):
    assert load_corpus(None).messages == BUILT_IN
    path = tmp_path / "c.txt"
    path.write_text("first question\n\nsecond question\n")
    corpus = load_corpus(path)
    assert corpus.messages == ("first question", "second question")
    assert len(corpus.conversation(random.Random(1), 4)) == 4


def test_jsonl_corpora_hold_messages_and_scripted_conversations(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"content": "one"}\n{"messages": ["a", "b", "c"]}\n')
    corpus = load_corpus(path)
    assert corpus.messages == ("one",) and corpus.conversation(random.Random(), 9) == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json\n", "line 1 starts like JSON"),
        ('{"x": 1}\n', "neither 'content'"),
        ("\n", "no messages"),
    ],
)
def test_a_bad_corpus_names_the_file_and_line(tmp_path, text, problem):
    path = tmp_path / "c.jsonl"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_corpus(path)
