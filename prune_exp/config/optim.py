"""The optimizer and LR-schedule schemas (``conf/optim/``) and their checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from prune_exp.config.checks import fail, in_range


@dataclass
class ScheduleConfig:
    """LR as a pure function of the (fractional) dense epoch; optional linear warmup first."""

    name: str = MISSING
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.0  # warmup starts at this fraction of optim.lr


@dataclass
class MultiStepScheduleConfig(ScheduleConfig):
    name: str = "multistep"
    milestones: list[float] = field(default_factory=lambda: [30.0, 45.0])  # in epochs
    gamma: float = 0.1


@dataclass
class CosineScheduleConfig(ScheduleConfig):
    name: str = "cosine"
    final_lr_factor: float = 0.0  # LR at the end, as a fraction of optim.lr


@dataclass
class ConstantScheduleConfig(ScheduleConfig):
    name: str = "constant"


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = 0.1  # the schedule's peak LR
    weight_decay: float = 0.0
    schedule: Any = MISSING  # one of the *ScheduleConfig, from the group optim/schedule


@dataclass
class SGDConfig(OptimConfig):
    """SGD with momentum (Renda et al.: momentum 0.9, not Nesterov, weight decay 5e-4)."""

    name: str = "sgd"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


def check_optim(opt: OptimConfig, T: float | None) -> None:
    """The optimizer's values; the schedule's epochs within T (None: T is not known yet, as
    with dense.iterations before the data is: config.check_dense_length checks them then)."""
    in_range("optim.lr", opt.lr, 0.0, math.inf, True, True)
    in_range("optim.weight_decay", opt.weight_decay, 0.0, math.inf, False, True)
    if isinstance(opt, SGDConfig):
        in_range("optim.momentum", opt.momentum, 0.0, 1.0, False, True)
        if opt.nesterov and opt.momentum == 0:
            raise fail("optim.nesterov", True, "false when optim.momentum=0 (Nesterov needs momentum)")
    if isinstance(opt, AdamConfig):
        if len(opt.betas) != 2:
            raise fail("optim.betas", list(opt.betas), "two numbers in [0, 1)")
        for b in opt.betas:
            in_range("optim.betas", b, 0.0, 1.0, False, True)
        in_range("optim.eps", opt.eps, 0.0, math.inf, True, True)
    sch = opt.schedule
    end = math.inf if T is None else T
    in_range("optim.schedule.warmup_epochs", sch.warmup_epochs, 0.0, end, False, True)
    in_range("optim.schedule.warmup_start_factor", sch.warmup_start_factor, 0.0, 1.0, False, False)
    if isinstance(sch, MultiStepScheduleConfig):
        ms = list(sch.milestones)
        if ms != sorted(ms) or any(not (0 < m < end) for m in ms):
            raise fail("optim.schedule.milestones", ms, f"increasing epochs in (0, {end}) (T, the dense run's epochs)")
        in_range("optim.schedule.gamma", sch.gamma, 0.0, 1.0, True, False)
    if isinstance(sch, CosineScheduleConfig):
        in_range("optim.schedule.final_lr_factor", sch.final_lr_factor, 0.0, 1.0, False, False)
