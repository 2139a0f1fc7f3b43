"""Held sessions leave the collector's full passes: frozen at each new peak step."""

from __future__ import annotations

import gc

import pytest

from wsload.heap import FREEZE_STEP, YOUNG_THRESHOLD, PeakFreezer, tune_collector


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


@pytest.fixture
def thresholds():
    """The collector's thresholds, put back after the test."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_load_start_freezes_what_lives_and_enlarges_the_young_generation(
    freezes: list[int], thresholds
):
    gc.set_threshold(700, 10, 10)  # Python's default
    tune_collector()
    assert len(freezes) == 1 and freezes[0] > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)


@pytest.mark.parametrize("theirs", [(50_000, 20, 5), (0, 10, 10)])
def test_a_young_generation_the_user_set_larger_or_off_is_left_as_it_is(
    freezes: list[int], thresholds, theirs
):
    gc.set_threshold(*theirs)
    tune_collector()
    assert gc.get_threshold() == theirs
