"""The ``[stream]`` section of a profile: which events carry the answer's tokens, where their
text is, and how output tokens are counted.

Streamed answers are judged by the numbers LLM-serving benchmarks report (time to first
token, inter-token latency, output tokens per second); the tracker needs to know which
events carry tokens and where their text is to measure them. ``events = []`` means the
backend does not stream: no stream samples, nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

TOKENIZERS = ("whitespace", "chars")  # and tiktoken:<encoding>
TIKTOKEN_PREFIX = "tiktoken:"

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Stream:
    # Event types that carry answer tokens ([] = the backend does not stream).
    events: tuple[str, ...] = ("stream_chunk", "partial_result")
    # Dotted path of the text in a token-bearing event; "" = the events carry no text
    # wsload reads (each event then counts as one output token).
    text_field: str = "data.content"
    # How output tokens are counted: whitespace | chars | tiktoken:<encoding>.
    tokenizer: str = "whitespace"


def stream_problem(stream: Stream) -> tuple[str, str] | None:
    """(key, problem) of a ``[stream]`` section that cannot be used, else None."""
    if any(not name for name in stream.events):
        return "stream.events", "an event type is an empty string"
    tokenizer = stream.tokenizer
    if tokenizer in TOKENIZERS:
        return None
    if tokenizer.startswith(TIKTOKEN_PREFIX) and tokenizer[len(TIKTOKEN_PREFIX) :]:
        return None
    return (
        "stream.tokenizer",
        f"{tokenizer!r} is not one of whitespace, chars, tiktoken:<encoding> "
        "(e.g. tiktoken:cl100k_base)",
    )


def whitespace_tokens(text: str) -> int:
    """Words between whitespace: the tokenizer-free count LLM benchmarks fall back to."""
    return len(text.split())


_COUNTERS: dict[str, TokenCounter] = {}


def token_counter(tokenizer: str) -> TokenCounter:
    """The counting function a tokenizer name stands for, loaded once per process.

    ``tiktoken:<encoding>`` needs the optional ``tiktoken`` package and its encoding file
    (cached locally, or downloadable); without them this raises ``ConfigError`` with the fix,
    which run start-up turns into one message before any user starts.
    """
    counter = _COUNTERS.get(tokenizer)
    if counter is not None:
        return counter
    if tokenizer == "whitespace":
        counter = whitespace_tokens
    elif tokenizer == "chars":
        counter = len
    else:
        counter = _tiktoken_counter(tokenizer[len(TIKTOKEN_PREFIX) :])
    _COUNTERS[tokenizer] = counter
    return counter


def _tiktoken_counter(encoding_name: str) -> TokenCounter:
    from wsload.errors import ConfigError

    try:
        import tiktoken  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            f"stream.tokenizer = 'tiktoken:{encoding_name}' needs the tiktoken package",
            fix="pip install tiktoken, or set stream.tokenizer = 'whitespace'",
        ) from None
    try:
        encoding = tiktoken.get_encoding(encoding_name)
    except Exception as exc:  # unknown name, or its file neither cached nor downloadable
        raise ConfigError(
            f"stream.tokenizer: tiktoken cannot load encoding {encoding_name!r}: {exc}",
            fix="name an encoding tiktoken knows (cl100k_base, o200k_base) whose file is "
            "cached (TIKTOKEN_CACHE_DIR), or set stream.tokenizer = 'whitespace'",
        ) from None

    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    return count
