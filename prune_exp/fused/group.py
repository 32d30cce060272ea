"""A fused group's training: N jobs' rounds in one Lightning fit, their networks stacked.

Every arm is an ordinary job in its own dir, with its own lock, status, job-cache entry, dense
run, records, masks and artifacts: job/spine.py prepares and finishes each arm as it does a job
trained alone, and calls :func:`fit_group` where a job alone calls job/rounds.fit_rounds. The
launcher (fused/launch.py) decides which jobs can share a group from their configs;
:func:`slower_fused_here` says, where the group runs, when stacking would be slower there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from torch import nn

from prune_exp.fused.batches import FusedBatches
from prune_exp.fused.curves import ArmCurves
from prune_exp.fused.cycle import FusedCycle
from prune_exp.fused.evaluate import ArmsEvaluation
from prune_exp.fused.module import FusedModule
from prune_exp.fused.stack import StackedNets
from prune_exp.lit.module import PruneModule
from prune_exp.lit.rounds import ArmRounds
from prune_exp.lit.task import Task
from prune_exp.lit.trainer import Job, device_name, make_trainer
from prune_exp.store.checkpoint import ResumeCheckpoint
from prune_exp.store.logs import ResumableCSVLogger

log = logging.getLogger(__name__)


def slower_fused_here(accelerator: str, net: nn.Module) -> str | None:
    """Why N arms of ``net`` would train slower stacked than one after another on this machine,
    or None: 2-D or 3-D convolutions on a CPU (vmapped into one grouped convolution)."""
    if device_name(accelerator) == "cpu" and any(isinstance(m, (nn.Conv2d, nn.Conv3d)) for m in net.modules()):
        return (
            "on CPU, N arms' 2-D/3-D convolutions vmapped into one grouped convolution run slower "
            "than each arm's own (docs/benchmarks.md: CIFAR ResNet-20, 0.35x at 9 arms)"
        )
    return None


def fit_group(
    jobs: Sequence[Job],
    modules: Sequence[PruneModule],
    arms: Sequence[ArmRounds],
    epochs: int,
    log_dir: Path,
    *,
    resume: ResumeCheckpoint | None = None,
    persist: Sequence[Callback] = (),
    callbacks: Sequence[Callback] = (),
    arm_logs: Sequence[tuple[Path, Logger | None]] = (),
) -> None:
    """Train the jobs' rounds together (``arms[i]``: job i's rounds, pruning ``modules[i].net``;
    ``epochs``: the stage's length), each arm as its unfused job would. With ``resume``,
    continue from the group's checkpoint if there is one, and checkpoint into it (the
    ``persist`` callbacks carry the arms' own state, e.g. their records, through it, as
    job/rounds.fit_rounds does for one job). ``callbacks`` join the trainer, after the cycle.
    ``arm_logs``: each arm's CSV log dir and tracker (or None), which get its train loss."""
    first = jobs[0]
    ckpt = resume.resume_from() if resume is not None else None
    keep = resume.resumed_epoch if resume is not None else None
    arm_loggers = [[ResumableCSVLogger(str(d), keep), *([t] if t else [])] for d, t in arm_logs]
    stacked = StackedNets([m.net for m in modules], seeds=[job.seed for job in jobs])
    curves = ArmCurves(arm_loggers)
    trainer = make_trainer(
        first.trainer,
        max_epochs=epochs,
        callbacks=[FusedCycle(stacked, arms, modules), curves, *persist, *callbacks],
        log_dir=log_dir,
        progress_bar=first.progress_bar,
        resume=resume,
        loggers=[logger for arm in arm_loggers for logger in arm],
        validate=False,  # every arm at once, by the curves (and at its rounds' start and end, alone)
    )
    module = fused_module(jobs, stacked, curves, trainer.strategy.root_device)
    pl.seed_everything(first.seed, verbose=False)
    if ckpt:
        log.info("resuming the fused group from %s", ckpt)
    trainer.fit(module, ckpt_path=ckpt)


def fused_module(jobs: Sequence[Job], stacked: StackedNets, curves: ArmCurves, device: torch.device) -> FusedModule:
    """The stacked arms' LightningModule over the jobs' data where the group trains (``device``),
    with every arm validated at every epoch's end by ``curves`` when the data has a val split."""
    first = jobs[0]
    for job in jobs:  # the arms' data where the group trains, before their loaders are made
        if callable(place := getattr(job.datamodule, "place", None)):
            place(device)
    task = Task.of(first.task, first.datamodule.num_classes)
    if first.validates:
        curves.validate_with(ArmsEvaluation(stacked, task, [job.datamodule.val_dataloader() for job in jobs]))
    return FusedModule(stacked, first.optim, task, FusedBatches([job.datamodule.train_dataloader() for job in jobs]))
