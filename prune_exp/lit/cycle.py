"""RoundCycle: the prune-retrain rounds of one or N arms inside one ``Trainer.fit``.

The round boundaries, the LR of every step, the optimizer reset at a round's start and the
mask's enforcement are written here once. What differs between one arm and N arms in
lockstep is the trainee: OneNet (the arm's own network and whatever optimizers the
LightningModule has) or fused/cycle.StackedArms (the arms' parameters stacked, one LR per arm).
What an arm does at its round's start and end is lit/rounds.ArmRounds (lit/gradual.py:
GradualRounds, whose mask changes inside its rounds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from prune_exp.lit.callbacks import MaskEnforcer, RoundResult
from prune_exp.lit.rounds import ArmRounds
from prune_exp.pruning.mask import Mask


class Trainee(Protocol):
    """What the trainer trains: the arms' networks, one or stacked."""

    enforcer: MaskEnforcer  # attached to the trainer's optimizers for the fit

    def place(self, device: torch.device) -> None:
        """The arms' own networks where the trained one is (they are measured there)."""

    def unstack(self) -> None:
        """Each arm's network holds its trained weights (before it is pruned or measured)."""

    def restack(self) -> None:
        """The trained network holds each arm's weights again (after they were placed)."""

    def sync_mask(self, arms: Sequence[ArmRounds]) -> None:
        """The enforcer takes the arms' current masks."""

    def set_lr(self, optimizers: Sequence[torch.optim.Optimizer], lrs: list[float], device: torch.device) -> None:
        """Every optimizer's LR for the next step: arm i's is ``lrs[i]``."""


class OneNet:
    """One arm, trained as it is: its enforcer is the arm's own (ArmRounds keeps it current)."""

    def __init__(self, enforcer: MaskEnforcer) -> None:
        self.enforcer = enforcer

    def place(self, device: torch.device) -> None:
        pass  # the arm's network is the trained one

    def unstack(self) -> None:
        pass

    def restack(self) -> None:
        pass

    def sync_mask(self, arms: Sequence[ArmRounds]) -> None:
        pass

    def set_lr(self, optimizers: Sequence[torch.optim.Optimizer], lrs: list[float], device: torch.device) -> None:
        (lr,) = lrs
        for opt in optimizers:  # the strategy's LR, whatever the LightningModule
            for group in opt.param_groups:
                group["lr"] = lr


class RoundCycle(Callback):
    """Runs the arms' rounds (each of ``rounds x plan.epochs`` epochs, the same for every arm).

    At the first epoch of a round: every arm begins its round (prune, measure, place the
    weights, LR position), the optimizer state is reset (never carried across rounds) and the
    masks enforced; before every step, every arm's LR; at the last epoch of a round, every arm
    measures and reports it."""

    def __init__(self, arms: Sequence[ArmRounds], trainee: Trainee) -> None:
        if not arms:
            raise ValueError("a cycle needs at least one arm")
        self.arms, self.trainee = list(arms), trainee
        self.epochs = self.arms[0].plan.epochs

    # ---- resume: every arm's state in the stage's checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"arms": [arm.state_dict() for arm in self.arms]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = state_dict["arms"] if "arms" in state_dict else [state_dict]  # (one arm's, before 2026-12)
        if len(states) != len(self.arms):
            raise ValueError(f"the checkpoint holds {len(states)} arms, the cycle {len(self.arms)}")
        for arm, state in zip(self.arms, states, strict=True):
            arm.load_state_dict(state)
        self.trainee.sync_mask(self.arms)

    # ---- Lightning hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainee.place(pl_module.device)
        self.trainee.enforcer.attach(list(trainer.optimizers))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainee.enforcer.detach()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch % self.epochs:
            return
        self.trainee.unstack()
        for arm in self.arms:
            arm.begin_round(trainer.global_step)
        self.trainee.restack()
        for opt in trainer.optimizers:  # optimizer state is never carried across rounds
            opt.state.clear()
        self.trainee.sync_mask(self.arms)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if any([arm.before_step(step) for arm in self.arms]):  # every arm's, then the enforcer once
            self.trainee.sync_mask(self.arms)
        self.trainee.set_lr(trainer.optimizers, [arm.lr(step) for arm in self.arms], pl_module.device)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        round_ends = (trainer.current_epoch + 1) % self.epochs == 0
        if round_ends:
            self.trainee.unstack()
        for arm in self.arms:
            arm.end_epoch(trainer.global_step, round_ends)


class PruneRetrainCycle(RoundCycle):
    """One arm's rounds (ArmRounds' arguments), for any LightningModule whose ``net`` is pruned:
    it needs nothing of the module but its optimizers (the library example of docs/extending.md). With
    ``plan.epochs == 0`` (strategy none) call :meth:`run_without_training` instead of a fit."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__([ArmRounds(**kwargs)], OneNet(kwargs["enforcer"]))

    @property
    def arm(self) -> ArmRounds:
        return self.arms[0]

    @property
    def mask(self) -> Mask:
        return self.arm.mask

    @property
    def results(self) -> list[RoundResult]:
        return self.arm.results

    def run_without_training(self) -> list[RoundResult]:
        return self.arm.run_without_training()
