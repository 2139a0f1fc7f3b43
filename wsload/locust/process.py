"""What one Locust process holds across runs: its environment, recorder, runtime, target,
and the run being recorded. One instance, ``PROCESS``; the lifecycle listeners fill it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locust.env import Environment

    from wsload.locust.live import LiveStats
    from wsload.locust.recording import Recording, RecordsListener
    from wsload.locust.runs import Run
    from wsload.locust.runtime import Runtime


@dataclass
class Process:
    environment: Environment | None = None
    recording: Recording | None = None
    runtime: Runtime | None = None
    runtime_key: tuple[Any, ...] | None = None
    target: Any = None  # the embedded reference target, when this process started one
    target_args: tuple[str, ...] = ()  # the knobs it was started with
    run: Run | None = None  # the run being recorded (standalone or master)
    runs: int = 0  # runs started in this process
    live: LiveStats | None = None  # the web UI tabs' numbers
    listeners: list[RecordsListener] = field(default_factory=list)


PROCESS = Process()
