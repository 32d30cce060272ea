"""The prune-retrain stage of a job: the rounds built on the dense model (build_rounds), and
trained alone in one ``Trainer.fit`` (fit_rounds); fused/group.fit_group trains N jobs' rounds
in lockstep instead.

The stage checkpoints itself at every epoch end and, started again after a kill, resumes from
that checkpoint (see checkpoint.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from prune_exp.job.dense import rewound_weights
from prune_exp.lit.callbacks import MaskEnforcer, RoundResult
from prune_exp.lit.cycle import PruneRetrainCycle
from prune_exp.lit.gradual import GradualCycle
from prune_exp.lit.module import PruneModule
from prune_exp.lit.trainer import Job, evaluate_splits, make_module, make_trainer
from prune_exp.pruning.gradual import GradualPlan
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.retrain.lr import StrategyLR
from prune_exp.retrain.strategies import RoundPlan
from prune_exp.seeds import derive_seed
from prune_exp.store.checkpoint import ResumeCheckpoint
from prune_exp.store.dense_cache import DenseRun

log = logging.getLogger(__name__)


def dense_module(job: Job, dense: DenseRun) -> PruneModule:
    """The dense run's final model, in the module that retrains it: what the rounds prune."""
    net = job.build_net()
    net.load_state_dict(dense.state(dense.epochs))
    return make_module(job, net)


@dataclass
class Rounds:
    """A job's prune-retrain stage, built and not yet run: the module that trains the network,
    its pruner, and the cycle (a Lightning callback) that runs the rounds."""

    module: PruneModule
    pruner: Pruner
    cycle: PruneRetrainCycle
    plan: RoundPlan
    epochs: int  # the stage's length: rounds x the round's epochs


def build_rounds(
    job: Job,
    dense: DenseRun,
    module: PruneModule,
    pruner: Pruner,
    *,
    plan: RoundPlan,
    lr: StrategyLR,
    log_dir: Path,
    on_round_end: Callable[[RoundResult], None],
    gradual: GradualPlan | None = None,
    dense_metrics: Mapping[str, float] | None = None,
) -> Rounds:
    """The stage for ``module`` (dense_module), pruned by ``pruner`` round by round and
    retrained as ``plan`` says at the LR ``lr`` says, each round's result handed to
    ``on_round_end`` (the job's recorder); ``dense_metrics``: the dense model's, which round 1's
    pruning is compared with; with ``gradual`` (prune.schedule=gradual) the mask follows its ramp through the
    rounds (lit/gradual.py). :func:`fit_rounds` runs it alone, fused/group.fit_group with others."""
    net = module.net
    rewind_state = rewound_weights(job, dense, plan.rewind_step, log_dir) if plan.rewind_step is not None else None

    def round_start_weights(round_: int) -> dict[str, torch.Tensor] | None:
        if plan.weights == "rewind":
            return rewind_state
        if plan.weights == "reinit":  # a fresh draw per round, reproducible from (seed, round)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(job.seed, round_))
                return job.build_net().state_dict()
        return None

    arm = dict(
        net=net,
        pruner=pruner,
        plan=plan,
        enforcer=MaskEnforcer(net),
        evaluate=lambda: evaluate_splits(module, job.datamodule),
        round_start_weights=round_start_weights,
        lr=lr,
        steps_per_epoch=job.steps_per_epoch,
        on_round_end=on_round_end,
        dense_metrics=dense_metrics,
    )
    cycle = GradualCycle(gradual=gradual, **arm) if gradual is not None else PruneRetrainCycle(**arm)
    rounds = gradual.rounds if gradual is not None else pruner.rounds
    return Rounds(module, pruner, cycle, plan, rounds * plan.epochs)


def fit_rounds(
    job: Job,
    rounds: Rounds,
    *,
    log_dir: Path,
    resume: ResumeCheckpoint | None = None,
    persist: Sequence[Callback] = (),
    callbacks: Sequence[Callback] = (),
    loggers: Sequence[Logger] = (),
) -> Mask:
    """Run the stage alone, in one ``Trainer.fit``; return the final mask. With ``resume``,
    continue from its checkpoint if one is there, and checkpoint into it (the ``persist``
    callbacks carry the caller's state, e.g. the records, through it). ``callbacks`` and
    ``loggers`` (a tracker's) join the trainer."""
    pl.seed_everything(job.seed, verbose=False)
    if not rounds.plan.trains:
        job.datamodule.setup("fit")
        rounds.cycle.run_without_training()
        return rounds.cycle.mask
    ckpt = resume.resume_from() if resume is not None else None  # checked before the trainer is made
    trainer = make_trainer(
        job.trainer,
        max_epochs=rounds.epochs,
        callbacks=[rounds.cycle, *persist, *callbacks, *job.callbacks],
        log_dir=log_dir,
        progress_bar=job.progress_bar,
        resume=resume,
        loggers=loggers,
        validate=job.validates,
    )
    if ckpt:
        log.info("resuming the prune-retrain rounds from %s", ckpt)
    trainer.fit(rounds.module, datamodule=job.datamodule, ckpt_path=ckpt)
    return rounds.cycle.mask
