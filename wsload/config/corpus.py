"""Chat messages users send: a built-in set, or a file (one message per line, or JSONL).

JSONL lines may be ``{"content": "..."}`` (one message) or ``{"messages": [...]}`` (a whole
conversation sent in order on one thread). Plain lines are single messages; users then
draw their own conversations from them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from wsload.errors import ConfigError

BUILT_IN = (
    "Summarise my open support tickets.",
    "Which of our services had the most errors this week?",
    "Draft a reply to the customer asking about the refund.",
    "Compare the last two deployments and list what changed.",
    "What is the p95 latency of the checkout API today?",
    "Find the invoices that are overdue by more than 30 days.",
    "Explain this stack trace and suggest a fix.",
    "Which users signed up yesterday but never logged in?",
    "Create a short status update for the team channel.",
    "How much did we spend on cloud compute last month?",
    "List the feature flags that are still enabled for everyone.",
    "What are the top three reasons for churn this quarter?",
)


@dataclass(frozen=True)
class Corpus:
    messages: tuple[str, ...]
    conversations: tuple[tuple[str, ...], ...] = ()

    def conversation(self, rng: random.Random, turns: int) -> list[str]:
        """The messages of one conversation: a scripted one, or ``turns`` drawn messages."""
        if self.conversations:
            return list(rng.choice(self.conversations))
        return [rng.choice(self.messages) for _ in range(max(1, turns))]


def load_corpus(path: str | Path | None) -> Corpus:
    """The built-in corpus, or the file's; ``ConfigError`` names the file and the line."""
    if not path:
        return Corpus(BUILT_IN)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the --corpus file {path}: {getattr(exc, 'strerror', None) or exc}",
            fix="give a UTF-8 text file with one message per line, or JSONL",
        ) from None
    messages: list[str] = []
    conversations: list[tuple[str, ...]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                item = json.loads(line)
            except ValueError:
                raise ConfigError(
                    f"--corpus {path} line {number} starts like JSON but does not parse",
                    fix='write {"content": "..."} or {"messages": ["...", "..."]} per line',
                ) from None
            if isinstance(item.get("messages"), list) and all(
                isinstance(m, str) and m for m in item["messages"]
            ):
                conversations.append(tuple(item["messages"]))
            elif isinstance(item.get("content"), str) and item["content"]:
                messages.append(item["content"])
            else:
                raise ConfigError(
                    f"--corpus {path} line {number} has neither 'content' nor 'messages'",
                    fix='write {"content": "..."} or {"messages": ["...", "..."]} per line',
                )
        else:
            messages.append(line)
    if not messages and not conversations:
        raise ConfigError(f"--corpus {path} holds no messages", fix="put one message per line")
    return Corpus(tuple(messages) or BUILT_IN, tuple(conversations))
