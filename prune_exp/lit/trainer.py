"""The Lightning pieces every stage trains with: a job's training recipe (Job), its module,
its Trainer, and the evaluation of a module on the data's splits. Both stages (job/dense.py,
job/rounds.py) and a fused group (fused/group.py) make their Trainer here.
"""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from torch import nn

from prune_exp.config import OptimConfig, TaskConfig, TrainerConfig
from prune_exp.data.base import TensorDataModule
from prune_exp.lit.module import PruneModule
from prune_exp.retrain.schedules import LRPosition, LRSchedule
from prune_exp.store.checkpoint import Persist, ResumeCheckpoint, RNGState, SafeCheckpointIO
from prune_exp.store.columns import metric_key
from prune_exp.store.logs import ResumableCSVLogger

log = logging.getLogger(__name__)

# In-memory tensors need no loader workers, and a short epoch is no reason to log less often.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
# On a SLURM login node Lightning suggests srun; jobs that should run under SLURM are submitted
# by hydra/launcher=slurm (which uses srun), a local run is meant to be local.
warnings.filterwarnings("ignore", message=r".*The `srun` command is available on your system.*")
# Lightning's own use of a torch API that torch has deprecated; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


class KeepSigtermHandler(Callback):
    """Leave SIGTERM to the handler that was there before the fit: submitit's, in a job of
    hydra/launcher=slurm. On preemption SLURM sends SIGTERM, then the job's signal (USR2), on
    which submitit requeues the job; submitit ignores the SIGTERM. Lightning's own SIGTERM
    handler would end the fit at the next batch instead (SIGTERMException, a SystemExit), so
    the job would exit, not requeued, before the USR2 comes."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._handler = signal.getsignal(signal.SIGTERM)  # before Lightning installs its own

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning has installed its handler by now; it puts this one back after the fit.
        if self._handler not in (None, signal.SIG_DFL) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handler)


class StopAtStep(Callback):
    """Ends the fit after ``steps`` optimizer steps, inside its last epoch (dense.iterations):
    that epoch's end hooks still run, so its end saves the final weights. Lightning's own
    ``max_steps`` would not do here: a run resumed from an epoch-end checkpoint with it set
    redoes a step of that epoch."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.steps:
            trainer.should_stop = True


def make_trainer(
    cfg: TrainerConfig,
    *,
    max_epochs: int,
    callbacks: list[Callback],
    log_dir: Path,
    progress_bar: bool,
    resume: ResumeCheckpoint | None = None,
    max_steps: int = -1,
    loggers: Sequence[Logger] = (),
    validate: bool = True,
) -> pl.Trainer:
    """A Lightning Trainer for one stage; validation runs every epoch (unless not ``validate``:
    there is no val split) and is logged to CSV (and to ``loggers``). With ``resume``, the whole
    state is checkpointed there at every epoch end, RNGs included."""
    if progress_bar:
        callbacks = [*callbacks, RichProgressBar()]
    if resume is not None:
        callbacks = [*callbacks, Persist("rng", RNGState()), resume]
    plugins: list[Any] = [SafeCheckpointIO()]
    if SLURMEnvironment.detect():
        # submitit (hydra/launcher=slurm) requeues a preempted or timed-out job and the job
        # resumes from its checkpoint; Lightning's own requeue on SIGUSR1 would compete with it.
        plugins.append(SLURMEnvironment(auto_requeue=False))
        callbacks = [*callbacks, KeepSigtermHandler()]
    return pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        use_distributed_sampler=False,  # the datamodule shards the epoch's order itself (EpochShuffle)
        precision=cfg.precision,
        deterministic=cfg.deterministic,
        gradient_clip_val=cfg.gradient_clip_val,
        max_epochs=max_epochs,
        max_steps=max_steps,
        limit_val_batches=None if validate else 0,
        callbacks=callbacks,
        logger=[
            ResumableCSVLogger(str(log_dir), keep_through_epoch=resume.resumed_epoch if resume else None),
            *loggers,
        ],
        log_every_n_steps=cfg.log_every_n_steps,
        enable_checkpointing=resume is not None,
        plugins=plugins,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(log_dir),
    )


def device_name(accelerator: str) -> str:
    """What Lightning's ``accelerator`` setting trains on here: ``cpu``, ``mps``, or ``cuda``
    with the GPU's name (the records' ``device``)."""
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return "mps" if accelerator in ("gpu", "mps") and torch.backends.mps.is_available() else "cpu"


def make_module(job: Job, net: nn.Module) -> PruneModule:
    return PruneModule(
        net,
        job.optim,
        job.datamodule.num_classes,
        task=job.task,
        compile=job.trainer.compile,
        channels_last=job.trainer.channels_last,
    )


def dense_recipe(job: Job) -> tuple[nn.Module, PruneModule]:
    """The dense run's seeded start: its fresh network and the module that trains it along the
    dense schedule. The dense stage, its replay (rewind points inside an epoch) and a fused
    group's dense arms (fused/dense.py) share it."""
    pl.seed_everything(job.seed, verbose=False)
    net = job.build_net()
    module = make_module(job, net)
    module.lr_position = LRPosition(job.schedule, 0, 0, job.steps_per_epoch)
    return net, module


def evaluate_splits(module: PruneModule, dm: TensorDataModule) -> dict[str, float]:
    """Every metric on val and test (test alone without a val split), keyed ``val_acc``,
    ``test_loss``, ..."""
    out: dict[str, float] = {}
    for split in dm.splits:
        loader = getattr(dm, f"{split}_dataloader")()
        out.update({metric_key(split, k): v for k, v in module.evaluate(loader).items()})
    return out


@dataclass
class Job:
    """The typed objects a job is built from."""

    datamodule: TensorDataModule
    build_net: Callable[[], nn.Module]  # a fresh, randomly initialized network (seeded by caller)
    optim: OptimConfig
    schedule: LRSchedule
    trainer: TrainerConfig
    seed: int
    progress_bar: bool
    callbacks: list[Callback] = field(default_factory=list)  # extra Lightning callbacks, both stages
    task: TaskConfig = field(default_factory=TaskConfig)  # the loss and the metrics
    dense_weights: Path | None = None  # dense.weights: the dense stage is read from this file
    rewind_weights: dict[int, Path] = field(default_factory=dict)  # dense.rewind_weights: its earlier epochs

    @property
    def steps_per_epoch(self) -> int:
        return self.datamodule.steps_per_epoch

    @property
    def validates(self) -> bool:
        """Whether the data has a val split (data.val_fraction > 0) to validate on every epoch."""
        return "val" in self.datamodule.splits
