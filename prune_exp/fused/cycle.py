"""FusedCycle: N arms' rounds in lockstep, around the stacked steps (lit/cycle.RoundCycle with
the StackedArms trainee)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prune_exp.fused.optim import StackedOptimizer
from prune_exp.fused.stack import StackedNets
from prune_exp.lit.callbacks import MaskEnforcer
from prune_exp.lit.cycle import RoundCycle
from prune_exp.lit.rounds import ArmRounds
from prune_exp.pruning.mask import Mask


class StackedArms:
    """The arms' parameters stacked (StackedNets): each arm is pruned, measured and has its
    weights placed on its own network, which holds its slice of the stacked weights there
    (unstack / restack); the stacked parameters keep the arms' stacked masks, through the same
    MaskEnforcer an unfused job uses; one LR per arm (StackedOptimizer)."""

    def __init__(self, stacked: StackedNets, arms: Sequence[ArmRounds], modules: Sequence[nn.Module]) -> None:
        self.stacked, self.modules = stacked, list(modules)  # modules: what measures each arm
        self.enforcer = MaskEnforcer(stacked.holder)
        self.sync_mask(arms)

    def place(self, device: torch.device) -> None:
        for module in self.modules:
            module.to(device)

    def unstack(self) -> None:
        self.stacked.unstack()

    def restack(self) -> None:
        self.stacked.restack()

    def sync_mask(self, arms: Sequence[ArmRounds]) -> None:
        masks = [arm.mask for arm in arms]
        self.enforcer.set_mask(Mask({name: torch.stack([m[name] for m in masks]) for name in masks[0]}))

    def set_lr(self, optimizers: Sequence[torch.optim.Optimizer], lrs: list[float], device: torch.device) -> None:
        (opt,) = optimizers
        assert isinstance(opt, StackedOptimizer)
        opt.set_lr(torch.tensor(lrs, device=device))


class FusedCycle(RoundCycle):
    """The rounds of N arms that share their round structure (the same rounds, of the same
    epochs, steps per epoch and kind of training), each arm's as its own job's. ``modules[i]``
    measures arm i (it goes where the stacked network trains)."""

    def __init__(self, stacked: StackedNets, arms: Sequence[ArmRounds], modules: Sequence[nn.Module]) -> None:
        if len(arms) != stacked.arms:
            raise ValueError(f"{len(arms)} arms' rounds for {stacked.arms} stacked arms")
        super().__init__(arms, StackedArms(stacked, arms, modules))
        for arm in self.arms:  # each arm's retrain_seconds: its share of the group's time
            arm.clock_share = len(self.arms)
