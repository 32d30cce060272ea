"""ArmRounds: one arm's prune-retrain rounds, independent of Lightning.

At a round's start it prunes (a new mask), measures the pruned network and what the pruning did,
asks the strategy's LR rule for the round's peak (if it has one), places the weights the
strategy says (current, rewound, or a fresh init, times the mask) and sets the round's LR
(retrain/lr.py); at its end it measures the retrained network and hands the round's result to
``on_round_end`` (a job's recorder). lit/cycle.RoundCycle calls it at the round boundaries of
one ``Trainer.fit``, for one arm or for N arms in lockstep; its state goes into that fit's
resume checkpoint, so a killed stage resumes mid-round with the same mask and LR position.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from prune_exp import dist
from prune_exp.lit.callbacks import MaskEnforcer, RoundResult
from prune_exp.pruning.effect import PruningEffect, pruning_effect, sign_flips, weight_signs
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.retrain.lr import RoundLR, Schedule, StrategyLR
from prune_exp.retrain.rules import RoundFacts
from prune_exp.retrain.strategies import RoundPlan
from prune_exp.store.checkpoint import Stopwatch
from prune_exp.store.columns import SPLITS, metric_key

log = logging.getLogger(__name__)

Evaluate = Callable[[], dict[str, float]]


class ArmRounds:
    """``enforcer`` keeps ``net``'s pruned weights at zero (MaskEnforcer); ``lr`` is the
    strategy's (retrain/lr.StrategyLR), or, as a library user gives it, the dense schedule
    (replayed from ``plan.lr_start_step``) or a constant; ``round_start_weights(r)``: the state
    round r starts from (None: the current, pruned weights); ``dense_metrics``: the dense model's,
    what round 1's pruning is compared with. ``net``'s weights when it is built are the
    reference of the records' ``sign_flips`` (the dense model's final weights)."""

    def __init__(
        self,
        *,
        net: nn.Module,
        pruner: Pruner,
        plan: RoundPlan,
        enforcer: MaskEnforcer,
        evaluate: Evaluate,
        round_start_weights: Callable[[int], Mapping[str, torch.Tensor] | None],
        lr: StrategyLR | Schedule | float,
        steps_per_epoch: int,
        on_round_end: Callable[[RoundResult], None],
        dense_metrics: Mapping[str, float] | None = None,
    ) -> None:
        self.net, self.pruner, self.plan, self.enforcer = net, pruner, plan, enforcer
        self.evaluate = evaluate
        self.round_start_weights = round_start_weights
        self.steps_per_epoch = steps_per_epoch
        if not isinstance(lr, StrategyLR):
            if plan.lr not in ("constant", "replay"):
                raise ValueError(
                    f"lr={lr!r} is a constant LR or the dense schedule to replay, and strategy {plan.strategy} has "
                    f"lr={plan.lr}; pass lr=StrategyLR.of(strategy_config(...), plan, dense_schedule, steps_per_epoch)"
                )
            lr = StrategyLR.legacy(lr, plan.epochs * steps_per_epoch, plan.lr_start_step, steps_per_epoch)
        self.strategy_lr = lr
        self.on_round_end = on_round_end
        self.mask = pruner.initial_mask()
        self.mask_digest = ""
        self.round = 0
        self.results: list[RoundResult] = []
        self.round_lr: RoundLR | None = None  # the round's LR at each of its steps
        self._signs = weight_signs(net, pruner.prunable_names)  # the dense model's, for sign_flips
        self._pruned: dict[str, float] = {}
        self._before: dict[str, float] = dict(dense_metrics or {})  # the metrics before this round's pruning
        self._peak: float | None = None  # the rule's peak for this round
        self._diagnostics: dict[str, Any] = {}  # what this round's pruning did, the rule's values
        self._start_step = 0
        self._clock = Stopwatch()
        # The arms whose rounds one clock times together: a fused group's N arms train in one
        # fit, so each arm's retrain_seconds is the group's wall time of the round over N.
        self.clock_share = 1

    # ---- what the cycle calls
    def begin_round(self, global_step: int) -> None:
        """Prune, measure the pruned network and what the pruning did, ask the LR rule for the
        round's peak, place the weights, set the round's LR (the caller resets the optimizer)."""
        self.round += 1
        self._clock, self._start_step = Stopwatch(), global_step
        new = self.pruner.prune(self.mask, self.round)
        effect = pruning_effect(self.net, self.mask, new, self.pruner.prunable_names)
        self._set_mask(new, f"the mask of round {self.round}")
        log.info("round %d: mask sha256 %s (rank %d)", self.round, self.mask_digest, dist.global_rank())
        self._pruned = self.evaluate()
        self._diagnostics = {**effect.columns(), **_loss_increase(self._pruned, self._before)}
        if self.strategy_lr.rule is not None and self.plan.trains:
            self._ask_rule(effect)
        state = self.round_start_weights(self.round)
        if state is not None:
            self.net.load_state_dict(state)
            self.enforcer.set_mask(self.mask)
        self._set_round_lr()

    def before_step(self, global_step: int) -> bool:
        """Before optimizer step ``global_step``: whether the mask changed (only inside gradual rounds)."""
        return False

    def lr(self, global_step: int) -> float:
        assert self.round_lr is not None, "a round starts before its first batch"
        return self.round_lr(global_step - self._start_step)

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

    def _ask_rule(self, effect: PruningEffect) -> None:
        """The strategy's LR rule's peak for this round, from what its pruning did."""
        facts = RoundFacts(
            round=self.round,
            rounds=self.pruner.rounds,
            **dataclasses.asdict(effect),  # the sparsities, the fraction pruned, the norms
            epochs=self.plan.epochs,
            dense_epochs=self.strategy_lr.dense_epochs,
            dense_lr=self.strategy_lr.anchors(),
            pruned=dict(self._pruned),
            before=dict(self._before),
        )
        self._peak, values = self.strategy_lr.rule_peak(facts)
        self._diagnostics["lr_rule"] = json.dumps({"peak": self._peak, **values}, sort_keys=True, default=_plain)

    # ---- shared with gradual rounds
    def _set_mask(self, mask: Mask, what: str) -> None:
        self.mask = mask
        self.mask_digest = dist.tensors_digest(dict(mask))
        dist.check_same_on_every_rank(what, self.mask_digest)
        self.enforcer.set_mask(mask)

    def _set_round_lr(self) -> None:
        self.round_lr = self.strategy_lr.round_lr(self._peak)

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
        diagnostics = {**self._diagnostics, "sign_flips": sign_flips(self.net, self._signs, self.mask)}
        if self.plan.trains and self.round_lr is not None:
            diagnostics.update(self.round_lr.summary())
        self._diagnostics, self._before = {}, dict(retrained)
        result = RoundResult(
            round=round_,
            target_sparsity=target,
            mask=self.mask,
            mask_digest=self.mask_digest,
            pruned=pruned,
            retrained=retrained,
            epochs=epochs,
            steps=steps,
            seconds=self._clock.seconds / self.clock_share,
            diagnostics=diagnostics,
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
            "before": dict(self._before),
            "peak": self._peak,
            "diagnostics": dict(self._diagnostics),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.round, self._pruned, self._start_step = state_dict["round"], state_dict["pruned"], state_dict["start_step"]
        self._clock.load_state_dict(state_dict["clock"])
        # (checkpoints from before 2026-12 have no LR rule's peak nor diagnostics)
        self._before = dict(state_dict.get("before", {} if self.round else self._before))
        self._peak, self._diagnostics = state_dict.get("peak"), dict(state_dict.get("diagnostics", {}))
        self.mask = Mask(state_dict["mask"])
        self.mask_digest = dist.tensors_digest(state_dict["mask"]) if self.round else ""
        self.enforcer.set_mask(self.mask)
        if self.round:
            self._set_round_lr()


def _loss_increase(pruned: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    """The loss's relative increase by the pruning, on the first split measured both before and
    right after it (val, else test): the records' ``pruned_loss_increase``."""
    for split in SPLITS:
        key = metric_key(split, "loss")
        if key in pruned and before.get(key):
            return {"pruned_loss_increase": (pruned[key] - before[key]) / abs(before[key])}
    return {}


def _plain(value: Any) -> Any:
    """A rule's value as JSON takes it: a numpy or 0-d torch number as a float, else its text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
