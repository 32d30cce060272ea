"""JobPlan: what one job does, derived once from its typed config and its data's steps per
epoch; PrunerSpec: how it prunes. The preflight builds both to check a job before anything
runs; the job builds the same and runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import nn

from prune_exp.config import ConfigError, RunConfig, check_dense_length, dense_length
from prune_exp.pruning.criteria import Batches, Criterion, Loss
from prune_exp.pruning.gradual import GradualPlan, check_every
from prune_exp.pruning.pruner import Pruner, sparsity_schedule
from prune_exp.pruning.structure import Structure
from prune_exp.retrain.lr import StrategyLR
from prune_exp.retrain.schedules import LRSchedule
from prune_exp.retrain.strategies import RoundPlan, plan_round


@dataclass(frozen=True)
class PrunerSpec:
    """Which weights a job prunes and how: its criterion and structure (built from their
    ``_target_`` configs), the prune config's scope and name patterns, its seed."""

    criterion: Criterion
    structure: Structure
    scope: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layer_rate_scale: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0

    @classmethod
    def of(cls, rc: RunConfig, criterion: Criterion, structure: Structure) -> PrunerSpec:
        pr = rc.prune
        scale = dict(pr.layer_rate_scale or {})
        return cls(criterion, structure, pr.scope, tuple(pr.include), tuple(pr.exclude), scale, rc.seed)

    def build(
        self,
        net: nn.Module,
        sparsities: list[float],
        score_batches: Batches | None = None,
        score_loss: Loss = F.cross_entropy,
    ) -> Pruner:
        """The Pruner of ``net`` to these cumulative ``sparsities`` (the preflight's: the
        target alone, to check the names); data-driven criteria score on ``score_batches``
        with the task's ``score_loss``."""
        return Pruner(
            net,
            criterion=self.criterion,
            structure=self.structure,
            scope=self.scope,
            sparsities=sparsities,
            seed=self.seed,
            include=self.include,
            exclude=self.exclude,
            layer_rate_scale=self.layer_rate_scale,
            score_batches=score_batches,
            score_loss=score_loss,
        )


@dataclass(frozen=True)
class JobPlan:
    """The dense run's length, the strategy's round and its LR, each round's sparsity target
    and, with prune.schedule=gradual, the ramp the mask follows inside the rounds."""

    dense_epochs: float  # T: dense.epochs, or a fraction with dense.iterations
    steps_per_epoch: int
    round: RoundPlan  # what every round does, in steps of the dense run
    lr: StrategyLR  # the LR of every round's steps
    sparsities: tuple[float, ...]  # the cumulative target of each round (each record row)
    gradual: GradualPlan | None = None

    @classmethod
    def of(cls, rc: RunConfig, steps_per_epoch: int) -> JobPlan:
        """The plan of ``rc`` on data of ``steps_per_epoch``; ConfigError, naming the key, for a
        value that does not fit that data (a position outside the dense run, a ramp too short)."""
        T = dense_length(rc.dense, steps_per_epoch)
        if rc.dense.iterations is not None:  # what depends on T, now that the epoch length is known
            check_dense_length(rc, T)
        round_ = plan_round(rc.retrain, T, steps_per_epoch)
        lr = StrategyLR.of(rc.retrain, round_, LRSchedule(rc.optim.lr, T, rc.optim.schedule), steps_per_epoch)
        pr = rc.prune
        if pr.schedule == "gradual" and rc.retrain.lr_rule is not None:
            raise ConfigError(
                f"retrain.lr_rule={rc.retrain.lr_rule!r} is not allowed with prune.schedule=gradual; allowed: null "
                "(a rule sees what a round's pruning did, and gradual pruning happens inside the rounds)"
            )
        sparsities = tuple(sparsity_schedule(pr.sparsity, pr.schedule, pr.rate))
        gradual = None
        if pr.schedule == "gradual":  # the levels are its checkpoints; the pruner follows the ramp
            steps = round_.epochs * steps_per_epoch
            check_every(pr.every, len(sparsities), steps, _ramp(rc, len(sparsities), steps_per_epoch))
            gradual = GradualPlan(sparsities, steps, pr.every)
        return cls(T, steps_per_epoch, round_, lr, sparsities, gradual)

    @property
    def rounds(self) -> int:
        return len(self.sparsities)

    @property
    def stage_epochs(self) -> int:
        """The prune-retrain stage's length: rounds x the round's epochs."""
        return self.rounds * self.round.epochs

    @property
    def pruner_sparsities(self) -> list[float]:
        """The pruner's cumulative targets: one per round, or one per update of the ramp."""
        return list(self.gradual.sparsities if self.gradual is not None else self.sparsities)

    @property
    def dense_epochs_needed(self) -> set[int]:
        """The dense run's epoch files the strategy reads (RoundPlan.dense_epochs_needed)."""
        return self.round.dense_epochs_needed(self.steps_per_epoch)


def _ramp(rc: RunConfig, rounds: int, steps_per_epoch: int) -> str:
    """How a gradual job's rounds come about, for check_every's message."""
    pr, rt = rc.prune, rc.retrain
    length = f"retrain.budget={rt.budget}" if rt.duration == "budget" else f"retrain.duration={rt.duration}"
    return (
        f": prune.rate={pr.rate:g} takes {rounds} rounds to prune.sparsity={pr.sparsity:g}, each of {length} "
        f"epochs of {steps_per_epoch} steps"
    )
