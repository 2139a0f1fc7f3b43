"""The one place that decides, per connection and per turn, how the target behaves.

Handlers ask the policy instead of reading knobs themselves: which connections are slowed,
refused or go half-open, which turns are dropped, skip, reorder, duplicate or fail, which
events leak, how much a turn is slowed past the capacity, and when a session expires. The
server only carries the decisions out (and counts them when they reach the wire). Sans-I/O:
no sockets and no clock of its own. Separate seeded ``random.Random`` generators per worker
(jitter, connections, turns, leaks) make runs with ``--seed`` repeatable, and a draw for one
knob never shifts the draws of another.

With every fault knob off (the default) a turn is one cached, pre-encoded plan and the
server takes its plain send path: the knobs cost nothing per event.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from dataclasses import dataclass

from wsload.target.agent import (
    EncodedEvent,
    TurnKnobs,
    encode_plan,
    error_event,
    plan_turn,
    swapped,
)
from wsload.target.config import TargetConfig

# What the server does right after sending the event at an index of a turn (``TurnPlan.after``)
COUNT = "count"  # add one to the named counter: the fault is now visible to the client
DUPLICATE = "duplicate"  # send the same frame text again (byte-identical); arg: its counter
HOSTILE = "hostile"  # send the hostile frames of the named kind
DROP = "drop"  # abort the TCP connection: no close frame
_ORDER = {COUNT: 0, DUPLICATE: 1, HOSTILE: 2, DROP: 3}

# Answers of ``Policy.admit``
ADMIT = "admit"
REFUSE_503 = "refuse_503"
CLOSE_1013 = "close_1013"

RATE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """What happens to one WebSocket connection, decided before its upgrade."""

    not_ready: bool = False
    reject_at_upgrade: int | None = None  # HTTP status for a rejected token, None: after upgrade
    ack_delay_s: float = 0.0
    send_ack: bool = True
    slow_handshake_s: float = 0.0  # wait before answering the upgrade
    half_open_after_s: float = 0.0  # after the ack, stop answering anything; 0: never


Action = tuple[str, str]


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """The encoded events of a turn (offsets from message receipt) and injected faults.

    ``after`` maps an event index to the actions taken right after that event is sent; None
    for a turn without faults. ``errored``: the turn ends with ``agent_error``.
    """

    events: tuple[EncodedEvent, ...]
    after: dict[int, tuple[Action, ...]] | None = None
    errored: bool = False


class Policy:
    """Per-worker decisions drawn from the config and seeded random generators."""

    def __init__(self, config: TargetConfig, *, worker_index: int = 0) -> None:
        self.config = config
        base = None if config.seed is None else config.seed * 1009 + worker_index
        self.rng = random.Random(base)  # turn jitter
        self._conn_rng = random.Random(None if base is None else f"{base}/connections")
        self._turn_rng = random.Random(None if base is None else f"{base}/turns")
        self._leak_rng = random.Random(None if base is None else f"{base}/leaks")
        self.knobs = TurnKnobs(
            ttfe_s=config.ttfe_s,
            gap_s=config.gap_s,
            thinking_steps=config.thinking_steps,
            tools=config.tools,
            tool_duration_s=config.tool_duration_s,
            stream_tokens=config.stream_tokens,
            token_interval_s=config.token_interval_s,
            jitter=config.jitter,
        )
        self.leak_fraction = config.leak_fraction
        self.capacity = config.capacity
        self._overload_per_turn = (
            config.overload_delay_s / config.capacity if config.capacity else 0.0
        )
        self.turn_faults = any(
            (
                config.drop_mid_turn,
                config.skip_events,
                config.reorder_events,
                config.duplicate_events,
                config.duplicate_terminal,
                config.error_events,
                config.hostile,
            )
        )
        self.half_open = config.half_open_after_s > 0 and config.half_open_fraction > 0
        # plain: the server's send path needs no per-event check at all
        self.plain = not (self.turn_faults or self.leak_fraction or self.capacity or self.half_open)
        # every delay 0 and no capacity model: the whole turn is sent without a task
        self.instant_turns = self.knobs.instant and not self.capacity
        self.close_on_expiry = config.close_on_expiry
        self.connections_per_user = config.connections_per_user
        self.messages_per_minute = config.messages_per_minute
        self._hostile_kinds = itertools.cycle(config.hostile_kinds)
        # Without jitter every turn is the same: plan and serialize it once.
        fixed = None if config.jitter else encode_plan(plan_turn(self.knobs, self.rng))
        self._fixed_turn = fixed
        self._fixed_plan = None if fixed is None else TurnPlan(fixed)
        self._connection = ConnectionPlan(
            not_ready=config.not_ready,
            reject_at_upgrade=config.reject_at_upgrade if config.auth_mode == "enforce" else None,
            ack_delay_s=config.ack_delay_s,
            send_ack=not config.no_ack,
            slow_handshake_s=config.slow_handshake_s if config.slow_handshake_fraction else 0.0,
            half_open_after_s=config.half_open_after_s if self.half_open else 0.0,
        )
        self._per_connection_draws = (
            config.slow_handshake_s > 0 and 0 < config.slow_handshake_fraction < 1
        ) or (self.half_open and config.half_open_fraction < 1)

    # connections -----------------------------------------------------------------------
    def for_connection(self) -> ConnectionPlan:
        """The plan of the next connection (shared by all unless a fraction is drawn)."""
        plan = self._connection
        if not self._per_connection_draws:
            return plan
        config, rng = self.config, self._conn_rng
        slow = plan.slow_handshake_s
        if slow and config.slow_handshake_fraction < 1:
            slow = slow if rng.random() < config.slow_handshake_fraction else 0.0
        half_open = plan.half_open_after_s
        if half_open and config.half_open_fraction < 1:
            half_open = half_open if rng.random() < config.half_open_fraction else 0.0
        return ConnectionPlan(
            plan.not_ready,
            plan.reject_at_upgrade,
            plan.ack_delay_s,
            plan.send_ack,
            slow,
            half_open,
        )

    def admit(self, open_connections: int) -> str:
        """``ADMIT`` a new upgrade, or how to refuse it past ``--max-connections``."""
        limit = self.config.max_connections
        if not limit or open_connections < limit:
            return ADMIT
        return CLOSE_1013 if self.config.limit_close else REFUSE_503

    def admit_user(self, user_connections: int) -> bool:
        """Whether a user who already has this many open connections may open one more."""
        limit = self.connections_per_user
        return not limit or user_connections < limit

    def rate_window(self) -> RateWindow | None:
        """The per-connection message rate limiter, None when unlimited."""
        if not self.messages_per_minute:
            return None
        return RateWindow(self.messages_per_minute, RATE_WINDOW_S)

    def expiry_delay(self, expires_at: float | None, now: float) -> float | None:
        """Seconds until a session with this token expiry must be closed; None: never."""
        if not self.close_on_expiry or expires_at is None:
            return None
        return max(0.0, expires_at - now)

    # turns -----------------------------------------------------------------------------
    def for_turn(self) -> TurnPlan:
        """The plan of the next turn: events and, when fault knobs are on, its faults."""
        plan = self._fixed_plan
        if plan is None:
            plan = TurnPlan(encode_plan(plan_turn(self.knobs, self.rng)))
        if not self.turn_faults:
            return plan
        return self._with_faults(plan.events)

    def _with_faults(self, base: tuple[EncodedEvent, ...]) -> TurnPlan:
        """Apply the drawn faults; indices of ``after`` are positions in the final events.

        Order: skip one non-terminal event, swap two adjacent non-terminal events, replace
        the terminal event by ``agent_error``; then pick where (after which non-terminal
        event) a duplicate, a hostile injection and a drop happen; last, whether the terminal
        event is sent twice. Each enabled knob always draws the same numbers, so the turns of
        a seeded run are the same run after run.
        """
        config, rng = self.config, self._turn_rng
        events = list(base)
        after: dict[int, list[Action]] = {}

        def at(index: int, action: str, arg: str = "") -> None:
            after.setdefault(index, []).append((action, arg))

        if config.skip_events:
            hit, pick = rng.random() < config.skip_events, rng.random()
            if hit and len(events) >= 2:
                index = int(pick * (len(events) - 1))
                del events[index]
                at(index, COUNT, "skipped_events")  # noticed when the next event arrives
        if config.reorder_events:
            hit, pick = rng.random() < config.reorder_events, rng.random()
            if hit and len(events) >= 3:
                index = int(pick * (len(events) - 2))
                events[index], events[index + 1] = swapped(events[index], events[index + 1])
                at(index + 1, COUNT, "reordered_events")
        errored = False
        if config.error_events and rng.random() < config.error_events:
            events[-1] = error_event(events[-1].offset, len(base) - 1)
            at(len(events) - 1, COUNT, "error_events")
            errored = True
        middle = len(events) - 1  # events before the terminal one
        for fraction, action, arg in (
            (config.duplicate_events, DUPLICATE, "duplicated_events"),
            (config.hostile, HOSTILE, ""),
            (config.drop_mid_turn, DROP, ""),
        ):
            if fraction:
                hit, pick = rng.random() < fraction, rng.random()
                if hit and middle >= 1:
                    kind = next(self._hostile_kinds) if action == HOSTILE else arg
                    at(int(pick * middle), action, kind)
        if config.duplicate_terminal and rng.random() < config.duplicate_terminal:
            at(len(events) - 1, DUPLICATE, "duplicated_terminal_events")
        if not after:
            return TurnPlan(tuple(events))
        ordered = {i: tuple(sorted(a, key=lambda x: _ORDER[x[0]])) for i, a in after.items()}
        return TurnPlan(tuple(events), ordered, errored)

    def leak(self) -> bool:
        """Whether the event just sent is also sent to another user's connection."""
        return self._leak_rng.random() < self.leak_fraction

    def pick(self, count: int) -> int:
        """A random index below ``count`` (the connection a leaked event goes to)."""
        return self._leak_rng.randrange(count)

    def overload_s(self, active_turns: int) -> float:
        """Extra seconds added to each delay of a turn while ``active_turns`` run.

        Zero up to ``--capacity`` concurrent turns, then ``overload_delay * (active -
        capacity) / capacity`` per delay: a turn of k delays (k = its events) run at 2x
        capacity takes k * overload_delay longer. The server evaluates it each time one of
        a turn's delays ends, so running turns slow down as soon as more start, and recover
        as they finish.
        """
        over = active_turns - self.capacity
        return over * self._overload_per_turn if over > 0 else 0.0


class RateWindow:
    """At most ``limit`` messages in any ``window_s`` seconds (a sliding log of times)."""

    __slots__ = ("_times", "limit", "window_s")

    def __init__(self, limit: int, window_s: float = RATE_WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record a message at ``now`` and say whether it is within the limit."""
        times = self._times
        horizon = now - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until the next message would be allowed."""
        return max(0.0, self._times[0] + self.window_s - now) if self._times else 0.0
