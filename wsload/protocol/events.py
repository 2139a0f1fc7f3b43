"""What a client session reports: one event per thing to act on, sans I/O.

``ClientSession.receive_data`` (``wsload.protocol.session``) returns these; each carries
``at``, the (monotonic, ``perf_counter``) arrival time of what made it. Events of a turn
in progress are not reported one by one: its tracker takes them, and ``TurnEnded`` says
when it has its verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wsload.protocol.tracker import TurnTracker
from wsload.protocol.upgrade import UpgradeResponse

# Plain slotted dataclasses, not frozen: a frozen init costs three times as much.


@dataclass(slots=True)
class Upgraded:
    """A valid 101 arrived at ``at``."""

    at: float
    response: UpgradeResponse


@dataclass(slots=True)
class UpgradeFailed:
    """No valid 101: ``failure`` is the taxonomy id (``invalid_http``, ``http_<status>``)."""

    at: float
    failure: str
    detail: str
    status: int | None = None


@dataclass(slots=True)
class Acked:
    """The ack came; ``mismatch`` says why it is someone else's session (else None)."""

    at: float
    auth_ms: float
    user_id: str | None
    message: dict[str, Any]
    mismatch: str | None = None


@dataclass(slots=True)
class Rejected:
    """The session ended before the ack: refused, closed, malformed or timed out."""

    at: float
    auth_ms: float
    failure: str
    detail: str
    close_code: int | None = None
    error_code: str | None = None


@dataclass(slots=True)
class TurnEnded:
    """The current turn's tracker took its terminal (or error) event."""

    at: float
    tracker: TurnTracker


@dataclass(slots=True)
class Pong:
    """The pong of our heartbeat ping; ``ms`` is the round trip."""

    at: float
    ms: float


@dataclass(slots=True)
class Stray:
    """One of our events outside any turn (nothing to count, but seen)."""

    at: float
    name: str


@dataclass(slots=True)
class Foreign:
    """An event of another user or thread outside any turn: an isolation failure."""

    at: float
    detail: str


@dataclass(slots=True)
class Duplicate:
    """An event of a turn that had already ended."""

    at: float
    detail: str


@dataclass(slots=True)
class ServerError:
    """An error frame mid-session."""

    at: float
    detail: str


@dataclass(slots=True)
class ProtocolError:
    """A message the profile does not allow (not JSON, no type, unknown type, binary, or a
    framing violation, which also closes the session)."""

    at: float
    detail: str


@dataclass(slots=True)
class Closed:
    """The session is over: the server's close frame, a lost link (1006), a violation."""

    at: float
    code: int | None
    reason: str
    violation: str | None = None


Event = (
    Upgraded
    | UpgradeFailed
    | Acked
    | Rejected
    | TurnEnded
    | Pong
    | Stray
    | Foreign
    | Duplicate
    | ServerError
    | ProtocolError
    | Closed
)
