"""GradualCycle: gradual magnitude pruning (pruning/gradual.py) inside one ``Trainer.fit``.

The run has the round structure of the iterative arms (rounds x ``plan.epochs`` epochs): at the
start of every round the optimizer state is reset and the LR position set, exactly as
PruneRetrainCycle does, and the weights stay the current ones. The mask changes on the ramp's
steps instead of at round starts, and each level's row is written at its record step. The
mask, its enforcement, the evaluation and the records are PruneRetrainCycle's.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch

from prune_exp import dist
from prune_exp.checkpoint import Stopwatch
from prune_exp.lit.callbacks import PruneRetrainCycle, RoundResult
from prune_exp.pruning.gradual import GradualPlan

log = logging.getLogger(__name__)


class GradualCycle(PruneRetrainCycle):
    """``pruner``'s cumulative targets are ``gradual.sparsities`` (one per update); ``round``
    counts the rows written (one per level)."""

    def __init__(self, *, gradual: GradualPlan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gradual = gradual
        self.update = 0  # the index of the next update of the mask
        self._pruned_at: dict[int, dict[str, float]] = {}  # level -> metrics right after reaching it
        self._row_step = 0  # the step of the previous row

    # ---- the run, independent of Lightning
    def start_round(self, global_step: int, optimizers: list[torch.optim.Optimizer]) -> None:
        for opt in optimizers:  # optimizer state is never carried across rounds
            opt.state.clear()
        self._start_step = global_step
        self._set_lr_position()

    def step(self, global_step: int) -> None:
        """Before the optimizer step ``global_step``: the rows due, then the update due."""
        self.record_due(global_step)
        g = self.gradual
        while self.update < len(g.update_steps) and g.update_steps[self.update] <= global_step:
            self._apply_update()

    def _apply_update(self) -> None:
        self.update += 1
        self.mask = self.pruner.prune(self.mask, self.update)
        self.mask_digest = dist.tensors_digest(dict(self.mask))
        dist.check_same_on_every_rank(f"the mask of update {self.update}", self.mask_digest)
        self.enforcer.set_mask(self.mask)
        reached = [k for k, i in enumerate(self.gradual.reached_at) if i == self.update - 1]
        if reached:
            log.info(
                "update %d: sparsity %.4f reaches level %s (mask sha256 %s)",
                self.update,
                self.gradual.sparsities[self.update - 1],
                ", ".join(f"{self.gradual.levels[k]:.4f}" for k in reached),
                self.mask_digest,
            )
            metrics = self.evaluate()
            self._pruned_at.update({k: metrics for k in reached})

    def record_due(self, global_step: int) -> None:
        """Write the row of every level whose record step has come (one evaluation for all)."""
        g = self.gradual
        due = [k for k in range(self.round, g.rounds) if g.record_steps[k] <= global_step]
        if not due:
            return
        metrics = self.evaluate()
        for k in due:
            steps, self._row_step = global_step - self._row_step, global_step
            result = RoundResult(
                round=k + 1,
                target_sparsity=g.levels[k],
                mask=self.mask,
                mask_digest=self.mask_digest,
                pruned=self._pruned_at.pop(k),
                retrained=metrics,
                epochs=steps / self.steps_per_epoch,
                steps=steps,
                seconds=self._clock.seconds,
            )
            self._clock = Stopwatch()
            self.round = k + 1
            self.results.append(result)
            self.on_round_end(result)

    # ---- resume
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "update": self.update, "pruned_at": self._pruned_at, "row_step": self._row_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.update, self._row_step = state_dict["update"], state_dict["row_step"]
        self._pruned_at = {int(k): v for k, v in state_dict["pruned_at"].items()}
        # the mask and its enforcement are restored by the base class; its digest goes with the updates
        self.mask_digest = dist.tensors_digest(state_dict["mask"]) if self.update else ""
        self._set_lr_position()  # a checkpoint is taken inside a round, whatever rows are written

    # ---- Lightning hooks
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch % self.plan.epochs == 0:
            self.start_round(trainer.global_step, list(trainer.optimizers))

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.step(trainer.global_step)
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record_due(trainer.global_step)
