"""ArmRounds: one arm's prune-retrain rounds, independent of Lightning.

At a round's start it prunes (a new mask), measures the pruned network, places the weights the
strategy says (current, rewound, or a fresh init, times the mask) and sets the round's LR
position; at its end it measures the retrained network and hands the round's result to
``on_round_end`` (a job's recorder). lit/cycle.RoundCycle calls it at the round boundaries of
one ``Trainer.fit``, for one arm or for N arms in lockstep; its state goes into that fit's
resume checkpoint, so a killed stage resumes mid-round with the same mask and LR position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from prune_exp import dist
from prune_exp.lit.callbacks import MaskEnforcer, RoundResult
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.retrain.schedules import LRPosition, LRSchedule
from prune_exp.retrain.strategies import RoundPlan
from prune_exp.store.checkpoint import Stopwatch

log = logging.getLogger(__name__)

Evaluate = Callable[[], dict[str, float]]


class ArmRounds:
    """``enforcer`` keeps ``net``'s pruned weights at zero (MaskEnforcer); ``lr`` is the dense
    schedule (replayed from ``plan.lr_start_step``) or a constant; ``round_start_weights(r)``:
    the state round r starts from (None: the current, pruned weights)."""

    def __init__(
        self,
        *,
        net: nn.Module,
        pruner: Pruner,
        plan: RoundPlan,
        enforcer: MaskEnforcer,
        evaluate: Evaluate,
        round_start_weights: Callable[[int], Mapping[str, torch.Tensor] | None],
        lr: LRSchedule | Callable[[float], float] | float,
        steps_per_epoch: int,
        on_round_end: Callable[[RoundResult], None],
    ) -> None:
        self.net, self.pruner, self.plan, self.enforcer = net, pruner, plan, enforcer
        self.evaluate = evaluate
        self.round_start_weights = round_start_weights
        self.lr_, self.steps_per_epoch = lr, steps_per_epoch
        self.on_round_end = on_round_end
        self.mask = pruner.initial_mask()
        self.mask_digest = ""
        self.round = 0
        self.results: list[RoundResult] = []
        self.lr_position: LRPosition | None = None  # where the round is in the LR schedule
        self._pruned: dict[str, float] = {}
        self._start_step = 0
        self._clock = Stopwatch()

    # ---- what the cycle calls
    def begin_round(self, global_step: int) -> None:
        """Prune, measure, place the weights, set the LR position (the caller resets the optimizer)."""
        self.round += 1
        self._clock, self._start_step = Stopwatch(), global_step
        self._set_mask(self.pruner.prune(self.mask, self.round), f"the mask of round {self.round}")
        log.info("round %d: mask sha256 %s (rank %d)", self.round, self.mask_digest, dist.global_rank())
        self._pruned = self.evaluate()
        state = self.round_start_weights(self.round)
        if state is not None:
            self.net.load_state_dict(state)
            self.enforcer.set_mask(self.mask)
        self._set_lr_position()

    def before_step(self, global_step: int) -> bool:
        """Before optimizer step ``global_step``: whether the mask changed (only inside gradual rounds)."""
        return False

    def lr(self, global_step: int) -> float:
        assert self.lr_position is not None, "a round starts before its first batch"
        return self.lr_position.lr(global_step)

    def end_epoch(self, global_step: int, round_ends: bool) -> None:
        """At an epoch's end: the round's result, when the round ends with it."""
        if round_ends:
            self.finish_round(global_step, self.plan.epochs)

    def finish_round(self, global_step: int, epochs: float) -> RoundResult:
        target = self.pruner.sparsities[self.round - 1]
        return self._result(self.round, target, self._pruned, self.evaluate(), global_step - self._start_step, epochs)

    def run_without_training(self) -> list[RoundResult]:
        """Strategy none: prune and measure every round, no retraining."""
        while self.round < self.pruner.rounds:
            self.begin_round(0)
            self.finish_round(0, 0)
        return self.results

    # ---- shared with gradual rounds
    def _set_mask(self, mask: Mask, what: str) -> None:
        self.mask = mask
        self.mask_digest = dist.tensors_digest(dict(mask))
        dist.check_same_on_every_rank(what, self.mask_digest)
        self.enforcer.set_mask(mask)

    def _set_lr_position(self) -> None:
        self.lr_position = LRPosition(self.lr_, self.plan.lr_start_step, self._start_step, self.steps_per_epoch)

    def _result(
        self,
        round_: int,
        target: float,
        pruned: dict[str, float],
        retrained: dict[str, float],
        steps: int,
        epochs: float,
    ) -> RoundResult:
        """The round's result, handed on (to the job's recorder); the clock starts again."""
        result = RoundResult(
            round=round_,
            target_sparsity=target,
            mask=self.mask,
            mask_digest=self.mask_digest,
            pruned=pruned,
            retrained=retrained,
            epochs=epochs,
            steps=steps,
            seconds=self._clock.seconds,
        )
        self._clock = Stopwatch()
        self.results.append(result)
        self.on_round_end(result)
        return result

    # ---- resume (the cycle puts this state into the stage's checkpoint)
    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "mask": dict(self.mask),
            "pruned": dict(self._pruned),
            "start_step": self._start_step,
            "clock": self._clock.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.round, self._pruned, self._start_step = state_dict["round"], state_dict["pruned"], state_dict["start_step"]
        self._clock.load_state_dict(state_dict["clock"])
        self.mask = Mask(state_dict["mask"])
        self.mask_digest = dist.tensors_digest(state_dict["mask"]) if self.round else ""
        self.enforcer.set_mask(self.mask)
        if self.round:
            self._set_lr_position()
