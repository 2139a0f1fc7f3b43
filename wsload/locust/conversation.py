"""What a chat user says and when: its conversations, and when the next message is due.

A conversation is a few messages from the corpus on one thread; thread ids never repeat
across runs (a real backend may keep its threads). The open model sends each message at a
fixed time whatever the turns take; the closed model thinks after each turn.
"""

from __future__ import annotations

import random
import secrets
import time

from wsload.config.options import RunOptions

_perf = time.perf_counter
# A random tag per process, then node, user and conversation number: unique across runs
# and cheaper than a uuid4 per thread.
_RUN_TAG = secrets.token_hex(4)


class Conversation:
    """The messages of one user, conversation after conversation, and the thread of each."""

    def __init__(self, options: RunOptions, node: str, index: int, rng: random.Random) -> None:
        self._options = options
        self._prefix = f"thread-{_RUN_TAG}-{node}-{index}"
        self._rng = rng
        self._messages: list[str] = []
        self._count = 0
        self.thread_id = ""
        self.new()

    def new(self) -> None:
        """Start a new conversation on a new thread."""
        opts = self._options
        self._messages = opts.corpus.conversation(self._rng, opts.turns_per_conversation)
        self._count += 1
        self.thread_id = f"{self._prefix}-{self._count}"

    def next_message(self) -> str:
        """The next message, on a new thread once the conversation is over."""
        if not self._messages:
            self.new()
        return self._messages.pop(0)


class Pacing:
    """When the next message is due: think time after a turn, or the open model's clock."""

    def __init__(self, options: RunOptions, rng: random.Random) -> None:
        self._options = options
        self._rng = rng
        self.due_at: float | None = None  # open model: when the current message was due

    @property
    def open_model(self) -> bool:
        return self._options.send_interval_s > 0

    def next_due(self) -> float:
        """When to send the next message (perf_counter seconds)."""
        interval = self._options.send_interval_s
        if interval <= 0:
            return _perf() + self._options.think_time.sample(self._rng)
        if self.due_at is None:
            self.due_at = _perf() + self._rng.uniform(0, interval)  # users spread out
        else:
            self.due_at += interval
        return self.due_at
