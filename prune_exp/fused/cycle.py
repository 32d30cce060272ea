"""FusedCycle: runs every arm's own PruneRetrainCycle in lockstep, around the stacked steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from prune_exp.fused.optim import StackedOptimizer
from prune_exp.fused.stack import StackedNets
from prune_exp.lit.callbacks import MaskEnforcer, PruneRetrainCycle
from prune_exp.pruning.mask import Mask
from prune_exp.stages import Rounds


class FusedCycle(Callback):
    """The rounds of N arms that share their round structure (the same rounds, of the same
    epochs, steps per epoch and strategy kind of training).

    Each round's start and end are each arm's own cycle's (``begin_round``, ``finish_round``:
    prune, measure, place the weights, record), on the arm's own network, which holds its
    slice of the stacked weights there (StackedNets.unstack / restack). In between, the
    stacked steps: every arm's LR from its own cycle's LR position, its mask enforced on the
    stacked parameters by the same MaskEnforcer an unfused job uses, over stacked masks."""

    def __init__(self, stacked: StackedNets, rounds: Sequence[Rounds]) -> None:
        if len(rounds) != stacked.arms:
            raise ValueError(f"{len(rounds)} arms' rounds for {stacked.arms} stacked arms")
        self.stacked, self.rounds = stacked, list(rounds)
        self.cycles: list[PruneRetrainCycle] = [r.cycle for r in rounds]
        self.epochs = self.cycles[0].plan.epochs
        self.enforcer = MaskEnforcer(stacked.holder)
        self.enforcer.set_mask(self._stacked_mask())

    def _stacked_mask(self) -> Mask:
        masks = [c.mask for c in self.cycles]
        return Mask({name: torch.stack([m[name] for m in masks]) for name in masks[0]})

    def _optimizer(self, trainer: pl.Trainer) -> StackedOptimizer:
        (opt,) = trainer.optimizers
        assert isinstance(opt, StackedOptimizer)
        return opt

    # ---- resume: every arm's cycle state in the group's checkpoint (the stacked weights and
    # optimizer state are the FusedModule's and its optimizer's)
    def state_dict(self) -> dict[str, Any]:
        return {"arms": [c.state_dict() for c in self.cycles]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if len(state_dict["arms"]) != len(self.cycles):
            raise ValueError(f"the checkpoint holds {len(state_dict['arms'])} arms, the group {len(self.cycles)}")
        for cycle, state in zip(self.cycles, state_dict["arms"], strict=True):
            cycle.load_state_dict(state)
        self.enforcer.set_mask(self._stacked_mask())

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for r in self.rounds:  # each arm's network is measured where the stacked one trains
            r.module.to(pl_module.device)
        self.enforcer.attach(list(trainer.optimizers))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.enforcer.detach()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch % self.epochs:
            return
        self.stacked.unstack()
        for cycle in self.cycles:
            cycle.begin_round(trainer.global_step, [])
        self.stacked.restack()
        self._optimizer(trainer).state.clear()  # never carried across rounds, as in every arm's own job
        self.enforcer.set_mask(self._stacked_mask())

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        step = trainer.global_step
        lrs = [c.lr_position.lr(step) for c in self.cycles]  # type: ignore[union-attr]
        self._optimizer(trainer).set_lr(torch.tensor(lrs, device=pl_module.device))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.epochs:
            return
        self.stacked.unstack()
        for cycle in self.cycles:
            cycle.finish_round(trainer.global_step, self.epochs)
