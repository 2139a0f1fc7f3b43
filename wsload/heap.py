"""A load-generating process and Python's cyclic garbage collector.

``tune_collector`` runs when the load starts. What is alive then (modules, Locust, the
profile) stays alive to the end: it is frozen (``gc.freeze``), so full passes do not walk
it again and again. And the young generation is made larger (``YOUNG_THRESHOLD``): a
saturated chat generator makes tens of thousands of container objects a second that live
a few milliseconds (parsed events, a turn's tracker state, its record until the recording
makes columns of it, ``wsload.locust.recording``). Python's default young collection every
700 objects ran about 60 times a second; each walked what happened to be alive and
promoted it to be walked again by the older generations. At 10,000 nearly everything is
freed by reference counting before a young collection comes: the collector took 3.5% of
a saturated generator's CPU with the default and 0.0% with this (``benchmarks/results.py
--only full``, "garbage collector").

Many held sessions: a process holding thousands of sessions keeps hundreds of thousands
of long-lived objects (sockets, watchers, protocol state). The collector walks all of them
in each of its full passes, which come every time the long-lived set has grown by a
quarter, and a pass over a million objects stalls the process for a good fraction of a
second: handshakes and heartbeats wait, and that wait would be measured as the server's
latency. Measured on a
ramp to 100,000 sessions on 2 cores, those passes took about a third of the reference
target's CPU per session and a sixth of the generator's.

``PeakFreezer`` moves what is alive to the collector's permanent generation
(``gc.freeze``, constant time) each time the held count reaches a new peak step, so full
passes only walk what came since. The cost: a frozen object that later ends up in a
reference cycle is not reclaimed, so a session that drops after being frozen may keep its
memory if its objects form a cycle; that is bounded by the sessions frozen, at most the
peak held.
"""

from __future__ import annotations

import gc

FREEZE_STEP = 1000  # sessions held more than at the last freeze
YOUNG_THRESHOLD = 10_000  # container objects allocated (net) between young collections


def tune_collector() -> None:
    """Freeze what is alive and enlarge the young generation (never shrinking a larger
    one set by the user's locustfile)."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young and young < YOUNG_THRESHOLD:  # 0: the user turned automatic collection off
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)


class PeakFreezer:
    """Call ``held`` with the count of sessions a process holds whenever it changes."""

    __slots__ = ("_next",)

    def __init__(self, step: int = FREEZE_STEP) -> None:
        self._next = step

    def held(self, count: int) -> None:
        if count >= self._next:
            gc.freeze()
            self._next = count + FREEZE_STEP
