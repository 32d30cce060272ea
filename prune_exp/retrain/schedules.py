"""LR schedules as pure functions of the (fractional) epoch of the dense run."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from prune_exp.config import (
    ConstantScheduleConfig,
    CosineScheduleConfig,
    MultiStepScheduleConfig,
    ScheduleConfig,
)


@dataclass(frozen=True)
class LRSchedule:
    """``lr(epoch)`` for epoch in [0, total_epochs]; any shape, optional linear warmup first."""

    base_lr: float
    total_epochs: float  # T: whole epochs, or a fraction (dense.iterations)
    config: ScheduleConfig

    def __call__(self, epoch: float) -> float:
        c = self.config
        if epoch < c.warmup_epochs:
            start = c.warmup_start_factor
            return self.base_lr * (start + (1.0 - start) * epoch / c.warmup_epochs)
        if isinstance(c, MultiStepScheduleConfig):
            return self.base_lr * c.gamma ** bisect.bisect_right(list(c.milestones), epoch)
        if isinstance(c, CosineScheduleConfig):
            span = self.total_epochs - c.warmup_epochs
            progress = min(1.0, (epoch - c.warmup_epochs) / span)
            final = self.base_lr * c.final_lr_factor
            return final + (self.base_lr - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if isinstance(c, ConstantScheduleConfig):
            return self.base_lr
        raise TypeError(f"unknown schedule config {type(c).__name__}")


@dataclass(frozen=True)
class LRPosition:
    """Where a stage is in an LR schedule: at trainer step ``origin_step`` the schedule stands
    at dense step ``start_step`` and advances one step per optimizer step.

    Positions are whole steps, so a replayed schedule gives bit-identical LRs to the dense run.
    """

    schedule: LRSchedule | float  # a float is a constant LR (fine-tuning)
    start_step: int
    origin_step: int
    steps_per_epoch: int

    def lr(self, global_step: int) -> float:
        if isinstance(self.schedule, float):
            return self.schedule
        return self.schedule((self.start_step + global_step - self.origin_step) / self.steps_per_epoch)
