"""Gradual magnitude pruning (pruning/gradual.py) as rounds: GradualRounds, and GradualCycle, the
Lightning callback that runs them inside one ``Trainer.fit``.

The run has the round structure of the iterative arms (rounds x ``plan.epochs`` epochs): at the
start of every round the optimizer state is reset and the LR position set, as for every arm
(lit/cycle.RoundCycle), and the weights stay the current ones. The mask changes on the ramp's
steps instead of at round starts, and each level's row is written at its record step. The mask,
its enforcement, the evaluation and the records are ArmRounds'.
"""

from __future__ import annotations

import logging
from typing import Any

from prune_exp import dist
from prune_exp.lit.cycle import OneNet, PruneRetrainCycle, RoundCycle
from prune_exp.lit.rounds import ArmRounds
from prune_exp.pruning.gradual import GradualPlan

log = logging.getLogger(__name__)


class GradualRounds(ArmRounds):
    """``pruner``'s cumulative targets are ``gradual.sparsities`` (one per update); ``round``
    counts the rows written (one per level)."""

    def __init__(self, *, gradual: GradualPlan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gradual = gradual
        self.update = 0  # the index of the next update of the mask
        self._pruned_at: dict[int, dict[str, float]] = {}  # level -> metrics right after reaching it
        self._row_step = 0  # the step of the previous row

    def begin_round(self, global_step: int) -> None:
        """No pruning at a round's start: the LR position only (the caller resets the optimizer)."""
        self._start_step = global_step
        self._set_round_lr()

    def before_step(self, global_step: int) -> bool:
        """Before the optimizer step ``global_step``: the rows due, then the update due."""
        self.record_due(global_step)
        g, changed = self.gradual, False
        while self.update < len(g.update_steps) and g.update_steps[self.update] <= global_step:
            self._apply_update()
            changed = True
        return changed

    def end_epoch(self, global_step: int, round_ends: bool) -> None:
        self.record_due(global_step)

    def _apply_update(self) -> None:
        self.update += 1
        self._set_mask(self.pruner.prune(self.mask, self.update), f"the mask of update {self.update}")
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
            self.round = k + 1
            self._result(k + 1, g.levels[k], self._pruned_at.pop(k), metrics, steps, steps / self.steps_per_epoch)

    # ---- resume
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "update": self.update, "pruned_at": self._pruned_at, "row_step": self._row_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.update, self._row_step = state_dict["update"], state_dict["row_step"]
        self._pruned_at = {int(k): v for k, v in state_dict["pruned_at"].items()}
        # the mask and its enforcement are restored by the base class; its digest goes with the updates
        self.mask_digest = dist.tensors_digest(state_dict["mask"]) if self.update else ""
        self._set_round_lr()  # a checkpoint is taken inside a round, whatever rows are written


class GradualCycle(PruneRetrainCycle):
    """PruneRetrainCycle's arguments and ``gradual``: one arm's gradual rounds in one fit."""

    def __init__(self, *, gradual: GradualPlan, **kwargs: Any) -> None:
        RoundCycle.__init__(self, [GradualRounds(gradual=gradual, **kwargs)], OneNet(kwargs["enforcer"]))
