"""Held sessions leave the collector's full passes: frozen at each new peak step."""

from __future__ import annotations

import gc

import pytest

from wsload.heap import FREEZE_STEP, PeakFreezer


@pytest.fixture
def freezes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts gc.freeze calls (the frozen count alone can fall as frozen objects are freed)."""
    calls: list[int] = []
    real = gc.freeze

    def counted() -> None:
        real()
        calls.append(gc.get_freeze_count())

    monkeypatch.setattr(gc, "freeze", counted)
    gc.unfreeze()
    yield calls
    gc.unfreeze()


def test_objects_alive_at_each_new_peak_step_are_frozen_and_not_before(freezes: list[int]):
    freezer = PeakFreezer()
    freezer.held(FREEZE_STEP - 1)
    assert freezes == [] and gc.get_freeze_count() == 0
    freezer.held(FREEZE_STEP)
    assert len(freezes) == 1 and freezes[0] > 0  # what is alive went to the permanent generation
    freezer.held(FREEZE_STEP + FREEZE_STEP // 2)  # fewer than a step more: no freeze
    assert len(freezes) == 1
    freezer.held(2 * FREEZE_STEP)
    assert len(freezes) == 2
    freezer.held(FREEZE_STEP)  # a drop and a climb back: nothing new until a new peak step
    freezer.held(2 * FREEZE_STEP)
    assert len(freezes) == 2
    freezer.held(3 * FREEZE_STEP)
    assert len(freezes) == 3
