"""Held sessions leave the collector's full passes: frozen at each new peak step."""

from __future__ import annotations

import gc

from wsload.heap import FREEZE_STEP, PeakFreezer


def test_objects_alive_at_each_new_peak_step_are_frozen_and_not_before():
    gc.unfreeze()
    try:
        freezer = PeakFreezer()
        held = [object() for _ in range(10)]
        freezer.held(FREEZE_STEP - 1)
        assert gc.get_freeze_count() == 0
        held.append([])  # a tracked object
        freezer.held(FREEZE_STEP)
        frozen = gc.get_freeze_count()
        assert frozen > 0
        freezer.held(FREEZE_STEP + FREEZE_STEP // 2)  # fewer than a step more: no freeze
        more = [[] for _ in range(100)]
        freezer.held(FREEZE_STEP + FREEZE_STEP // 2)
        assert gc.get_freeze_count() == frozen
        freezer.held(2 * FREEZE_STEP)
        again = gc.get_freeze_count()
        assert again >= frozen + len(more)
        [[] for _ in range(100)]
        freezer.held(FREEZE_STEP)  # a drop and a climb back: nothing new until a new peak step
        freezer.held(2 * FREEZE_STEP)
        assert gc.get_freeze_count() == again
    finally:
        gc.unfreeze()
