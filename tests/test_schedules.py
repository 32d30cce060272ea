"""LR schedules (pure functions); the round plans are in test_strategies.py."""

from __future__ import annotations

import math

import pytest

from prune_exp.config import ConstantScheduleConfig, CosineScheduleConfig, MultiStepScheduleConfig
from prune_exp.retrain.lr import DenseLR
from prune_exp.retrain.schedules import LRPosition, LRSchedule


def test_multistep_drops_at_milestones() -> None:
    s = LRSchedule(0.1, 60, MultiStepScheduleConfig(milestones=[30, 45], gamma=0.1))
    assert [s(e) for e in (0, 29.99, 30, 44.9, 45, 59.9)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_linear_warmup_then_schedule() -> None:
    s = LRSchedule(0.4, 90, MultiStepScheduleConfig(milestones=[30, 60, 80], warmup_epochs=5, warmup_start_factor=0.0))
    assert s(0) == 0.0 and s(2.5) == pytest.approx(0.2) and s(5) == pytest.approx(0.4)
    assert s(30) == pytest.approx(0.04) and s(85) == pytest.approx(0.0004)


def test_cosine_from_peak_to_final() -> None:
    s = LRSchedule(1.0, 10, CosineScheduleConfig(final_lr_factor=0.1, warmup_epochs=2))
    assert s(2) == pytest.approx(1.0) and s(10) == pytest.approx(0.1)
    assert s(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_constant() -> None:
    s = LRSchedule(0.3, 10, ConstantScheduleConfig())
    assert {s(e) for e in (0, 3.3, 9.99)} == {0.3}


def test_the_dense_runs_anchors_are_its_last_max_and_min_after_warmup() -> None:
    s = LRSchedule(0.1, 60, MultiStepScheduleConfig(milestones=[30, 45], gamma=0.1))
    dense = DenseLR.of(s, 25)
    assert (dense.steps, dense.warmup_steps) == (1500, 0)
    assert dense.anchor("last") == s(1499 / 25) == pytest.approx(0.001)
    assert (dense.anchor("max"), dense.anchor("min")) == (s(0), s(1499 / 25))
    warm = DenseLR.of(LRSchedule(0.1, 4, ConstantScheduleConfig(warmup_epochs=1.5, warmup_start_factor=0.1)), 4)
    assert warm.warmup_steps == 6  # steps 0..5 are before epoch 1.5
    assert (warm.anchor("max"), warm.anchor("min"), warm.anchor("last")) == (0.1, 0.1, 0.1)  # min skips the warmup


def test_position_replays_the_schedule_from_an_offset_bit_for_bit() -> None:
    s = LRSchedule(1.0, 8, CosineScheduleConfig())
    dense = LRPosition(s, 0, 0, 7)
    replay = LRPosition(s, 5 * 7, 1000, 7)  # the dense schedule from epoch 5, starting at trainer step 1000
    assert all(replay.lr(1000 + i) == dense.lr(35 + i) for i in range(21))
    assert LRPosition(0.003, 0, 0, 7).lr(12345) == 0.003


def test_a_dense_runs_extremes_are_computed_once_per_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep's preflight plans every job: the pass over the dense steps is made once."""
    s = LRSchedule(0.1, 7, MultiStepScheduleConfig(milestones=[3, 5], gamma=0.1))
    import prune_exp.retrain.lr as lr_module

    monkeypatch.setattr(lr_module, "_EXTREMES", {})  # whatever other tests planned before
    calls = []
    at = DenseLR.at
    monkeypatch.setattr(DenseLR, "at", lambda self, step: calls.append(step) or at(self, step))
    assert DenseLR.of(s, 13).anchor("min") == pytest.approx(0.001)
    assert len(calls) == 7 * 13
    assert (DenseLR.of(s, 13).anchor("max"), len(calls)) == (0.1, 7 * 13)  # a second job: no second pass
