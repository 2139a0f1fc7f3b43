"""LLM-serving metrics of one streamed answer, from its token events' arrival times and text.

The definitions follow the LLM benchmarks users compare with (vLLM's bench, AIPerf,
llmperf), so a chat backend's streamed answers read like the numbers of its model server:

* ``ttft``: message sent to the first token event (time to first token).
* ``itl``: every gap between two consecutive token events; over a run these gaps are
  pooled, one observation per gap (vLLM's ITL), so a stall anywhere in any stream shows in
  the tail.
* ``tpot``: per turn, (last token event - first) / (output tokens - 1): the stream's mean
  time per output token after the first, one observation per turn (vLLM's TPOT, AIPerf's
  and llmperf's per-request inter-token latency), so each stream weighs the same.
* output tokens: counted by the profile's tokenizer over the whole answer (chunks can
  split words), next to its characters and whitespace words.
* tokens per second: output tokens / (message sent to the last token event), per stream
  (llmperf's per-request output throughput; ``1000 / tpot`` is the decode-only rate).

Pure: times in, numbers out.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from wsload.config.stream import TokenCounter, whitespace_tokens


@dataclass(slots=True)
class StreamMetrics:
    """One turn's streamed answer (times in ms from the message send)."""

    ttft_ms: float
    itl_ms: list[float]
    last_ms: float  # message sent to the last token event
    events: int  # token events
    chars: int | None  # None when the profile names no text field
    words: int | None
    tokens: int  # by the profile's tokenizer; token events when there is no text

    @property
    def tpot_ms(self) -> float | None:
        """Mean time per output token after the first; None with fewer than two tokens."""
        if self.tokens < 2:
            return None
        return (self.last_ms - self.ttft_ms) / (self.tokens - 1)

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens per second of the stream, message sent to its last token."""
        if self.last_ms <= 0.0:
            return None
        return self.tokens * 1000.0 / self.last_ms


def measure(
    sent_at: float, times: list[float], texts: list[str] | None, count: TokenCounter
) -> StreamMetrics:
    """The metrics of token events that arrived at ``times`` (seconds, in order, none before
    ``sent_at``) carrying ``texts`` (None: the events' text is not read)."""
    first = times[0]
    itl = [(b - a) * 1000.0 for a, b in itertools.pairwise(times)]
    if texts is None:
        chars = words = None
        tokens = len(times)
    else:
        answer = "".join(texts)
        chars = len(answer)
        words = whitespace_tokens(answer)
        tokens = words if count is whitespace_tokens else count(answer)
    return StreamMetrics(
        ttft_ms=(first - sent_at) * 1000.0,
        itl_ms=itl,
        last_ms=(times[-1] - sent_at) * 1000.0,
        events=len(times),
        chars=chars,
        words=words,
        tokens=tokens,
    )
