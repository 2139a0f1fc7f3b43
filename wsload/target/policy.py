"""The one place that decides, per connection and per turn, how the target behaves.

Handlers ask the policy instead of reading knobs themselves, so that fault knobs (drops,
skipped or reordered events, leaks, limits, probabilistic rejects) are added here and in
``TargetConfig`` without touching the I/O code's structure. Sans-I/O; one seeded
``random.Random`` per worker makes runs with ``--seed`` repeatable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from wsload.target.agent import EncodedEvent, TurnKnobs, encode_plan, plan_turn
from wsload.target.config import TargetConfig


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """What happens to one WebSocket connection, decided before its upgrade."""

    not_ready: bool = False
    reject_at_upgrade: int | None = None  # HTTP status for a rejected token, None: after upgrade
    ack_delay_s: float = 0.0
    send_ack: bool = True


class Policy:
    """Per-worker decisions drawn from the config and a seeded random generator."""

    def __init__(self, config: TargetConfig, *, worker_index: int = 0) -> None:
        self.config = config
        seed = None if config.seed is None else config.seed * 1009 + worker_index
        self.rng = random.Random(seed)
        self.knobs = TurnKnobs(
            ttfe_s=config.ttfe_s,
            gap_s=config.gap_s,
            thinking_steps=config.thinking_steps,
            tools=config.tools,
            tool_duration_s=config.tool_duration_s,
            jitter=config.jitter,
        )
        self.instant_turns = self.knobs.instant
        # Without jitter every turn is the same: plan and serialize it once.
        self._fixed_turn = None if config.jitter else encode_plan(plan_turn(self.knobs, self.rng))
        self._connection = ConnectionPlan(
            not_ready=config.not_ready,
            reject_at_upgrade=config.reject_at_upgrade if config.auth_mode == "enforce" else None,
            ack_delay_s=config.ack_delay_s,
            send_ack=not config.no_ack,
        )

    def for_connection(self) -> ConnectionPlan:
        """The plan of the next connection (the same for all until fault knobs exist)."""
        return self._connection

    def for_turn(self) -> tuple[EncodedEvent, ...]:
        """The encoded events of the next turn, offsets from message receipt."""
        if self._fixed_turn is not None:
            return self._fixed_turn
        return encode_plan(plan_turn(self.knobs, self.rng))
