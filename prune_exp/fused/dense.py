"""Dense runs trained together: the dense runs a fused group needs (its seeds', or its LRs')
as the arms of one stacked network, each written as its own run writes it
(job/dense._train_dense): its epoch files, its per-epoch log, its metrics, into its own
cache entry's staging dir. The arms share the data, model, optimizer (but its LR and
schedule), trainer and dense length; each starts from its own seeded init and data order.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from prune_exp.fused.curves import ArmCurves
from prune_exp.fused.group import fused_module
from prune_exp.fused.optim import StackedOptimizer
from prune_exp.fused.stack import StackedNets
from prune_exp.lit.callbacks import RewindPointSaver
from prune_exp.lit.module import PruneModule
from prune_exp.lit.trainer import Job, StopAtStep, dense_recipe, evaluate_splits, make_trainer
from prune_exp.retrain.schedules import LRPosition
from prune_exp.store.checkpoint import Persist, ResumeCheckpoint, Stopwatch
from prune_exp.store.dense_cache import save_state
from prune_exp.store.files import RESUME_FILE, epoch_file
from prune_exp.store.logs import ResumableCSVLogger

log = logging.getLogger(__name__)


class DenseArms(Callback):
    """Every arm's LR along its own dense schedule at every step; every arm's own network holds
    its slice of the stacked weights whenever the callbacks after this one read it (the rewind
    point savers: at the fit's start and every epoch's end)."""

    def __init__(self, stacked: StackedNets, positions: Sequence[LRPosition]) -> None:
        self.stacked, self.positions = stacked, list(positions)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stacked.unstack()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        (opt,) = trainer.optimizers
        assert isinstance(opt, StackedOptimizer)
        step = trainer.global_step
        opt.set_lr(torch.tensor([p.lr(step) for p in self.positions], device=pl_module.device))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stacked.unstack()


def fit_dense_group(
    jobs: Sequence[Job], stagings: Sequence[Path], keep_epochs: Sequence[set[int]], group_dir: Path
) -> list[dict[str, Any]]:
    """Train job i's dense run into ``stagings[i]`` (its epoch files at every epoch of
    ``keep_epochs[i]``, of 0 and of T, and its ``metrics.csv``), all of them in one fit, with
    the group's checkpoint in ``group_dir`` (resumed from, if there is one; removed once done).
    Each run's metadata, as the cache entry takes it; its seconds are its share of the fit's."""
    first, T = jobs[0], math.ceil(jobs[0].schedule.total_epochs)
    resume = ResumeCheckpoint(group_dir / RESUME_FILE, first.trainer.checkpoint_every_s)
    ckpt = resume.resume_from()
    log.info("%s %d dense runs together (%g epochs each)", "resuming" if ckpt else "training", len(jobs), T)
    nets, modules = zip(*(dense_recipe(job) for job in jobs), strict=True)  # each seeded: its own init
    stacked = StackedNets(list(nets), seeds=[job.seed for job in jobs])
    saved = [keep | {0, T} for keep in keep_epochs]
    arm_loggers = [[ResumableCSVLogger(str(staging), resume.resumed_epoch)] for staging in stagings]
    curves, clock = ArmCurves(arm_loggers), Stopwatch()
    trainer = make_trainer(
        first.trainer,
        max_epochs=T,
        callbacks=[
            *_stop_early(first, T),
            DenseArms(stacked, [LRPosition(job.schedule, 0, 0, job.steps_per_epoch) for job in jobs]),
            *(
                RewindPointSaver(net, epochs, functools.partial(_save, staging))
                for net, epochs, staging in zip(nets, saved, stagings, strict=True)
            ),
            curves,
            Persist("dense_clock", clock),
        ],
        log_dir=group_dir,
        progress_bar=first.progress_bar,
        resume=resume,
        loggers=[logger for arm in arm_loggers for logger in arm],
        validate=False,  # every arm at once, by the curves
    )
    module = fused_module(jobs, stacked, curves, trainer.strategy.root_device)
    pl.seed_everything(first.seed, verbose=False)
    trainer.fit(module, ckpt_path=ckpt)
    stacked.unstack()
    resume.remove()
    common = {"steps": trainer.global_step, "seconds": clock.seconds / len(jobs)}  # its share of the fit
    return [
        {"saved_epochs": sorted(epochs), "metrics": _measured(job, dense, trainer.strategy.root_device), **common}
        for job, dense, epochs in zip(jobs, modules, saved, strict=True)
    ]


def _stop_early(job: Job, T: int) -> list[Callback]:
    """dense.iterations: a last epoch cut short, as the run alone stops it."""
    steps = round(job.schedule.total_epochs * job.steps_per_epoch)
    return [StopAtStep(steps)] if steps != T * job.steps_per_epoch else []


def _measured(job: Job, dense: PruneModule, device: torch.device) -> dict[str, float]:
    """The trained dense arm's metrics on val and test, where the group trained."""
    return evaluate_splits(dense.to(device), job.datamodule)


def _save(staging: Path, epoch: int, state: dict[str, torch.Tensor]) -> None:
    save_state(staging / epoch_file(epoch), state)
