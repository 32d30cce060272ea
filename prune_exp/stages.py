"""The two stages of a job: the (shared, cached) dense run, then the prune-retrain rounds.

Each stage checkpoints itself at every epoch end and, started again after a kill, resumes
from that checkpoint (see checkpoint.py). Everything here takes typed objects; ``run.py``
is the only place that reads a DictConfig.
"""

from __future__ import annotations

import functools
import logging
import math
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

from prune_exp import dist
from prune_exp.cache import DenseCache, DenseRun, epoch_file, save_state, spec_hash
from prune_exp.checkpoint import (
    RESUME_FILE,
    Persist,
    ResumeCheckpoint,
    RNGState,
    SafeCheckpointIO,
    Stopwatch,
    read_weights,
)
from prune_exp.config import OptimConfig, TaskConfig, TrainerConfig
from prune_exp.data.base import TensorDataModule
from prune_exp.lit.callbacks import MaskEnforcer, PruneRetrainCycle, RewindPointSaver, RoundResult
from prune_exp.lit.gradual import GradualCycle
from prune_exp.lit.module import PruneModule
from prune_exp.logs import ResumableCSVLogger
from prune_exp.pruning.gradual import GradualPlan
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.retrain.schedules import LRPosition, LRSchedule
from prune_exp.retrain.strategies import RoundPlan
from prune_exp.seeds import derive_seed
from prune_exp.task import Task

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


def make_module(job: Job, net: nn.Module) -> PruneModule:
    return PruneModule(
        net,
        job.optim,
        job.datamodule.num_classes,
        task=job.task,
        compile=job.trainer.compile,
        channels_last=job.trainer.channels_last,
    )


def evaluate_splits(module: PruneModule, dm: TensorDataModule) -> dict[str, float]:
    """Every metric on val and test (test alone without a val split), keyed ``val_acc``,
    ``test_loss``, ..."""
    out: dict[str, float] = {}
    for split in dm.splits:
        loader = getattr(dm, f"{split}_dataloader")()
        out.update({f"{split}_{k}": v for k, v in module.evaluate(loader).items()})
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


def dense_recipe(job: Job) -> tuple[nn.Module, PruneModule]:
    """The dense run's seeded start: its fresh network and the module that trains it along the
    dense schedule. The dense stage and its replay (rewind points inside an epoch) share it."""
    pl.seed_everything(job.seed, verbose=False)
    net = job.build_net()
    module = make_module(job, net)
    module.lr_position = LRPosition(job.schedule, 0, 0, job.steps_per_epoch)
    return net, module


def dense_stage(
    job: Job, cache: DenseCache, spec: dict, keep_epochs: set[int], needed: set[int]
) -> tuple[DenseRun, bool]:
    """The dense run for ``spec``: from the cache, or trained now (once, under a lock), or read
    from ``job.dense_weights`` and measured.

    Under DDP, rank 0 takes the lock, trains and publishes; the other ranks train along
    (writing nothing), wait for it to publish, then read the entry like any later job."""
    T = math.ceil(job.schedule.total_epochs)  # the last epoch may be partial (dense.iterations)
    steps = round(job.schedule.total_epochs * job.steps_per_epoch)

    def train(staging: Path) -> dict[str, Any]:
        resume = ResumeCheckpoint(staging / RESUME_FILE, job.trainer.checkpoint_every_s)
        ckpt = resume.resume_from()
        how = "resuming" if ckpt else "training"
        log.info("%s the dense model (%g epochs, %d steps) into the cache", how, job.schedule.total_epochs, steps)
        net, module = dense_recipe(job)
        saver = RewindPointSaver(  # epoch T's file: the final weights, also after a partial last epoch
            net,
            keep_epochs | needed | {0, T},
            lambda e, state: save_state(staging / epoch_file(e), state) if dist.is_main() else None,
        )
        clock = Stopwatch()
        partial = [StopAtStep(steps)] if steps != T * job.steps_per_epoch else []  # dense.iterations
        trainer = make_trainer(
            job.trainer,
            max_epochs=T,
            callbacks=[*partial, saver, Persist("dense_clock", clock), *job.callbacks],
            log_dir=staging,
            progress_bar=job.progress_bar,
            resume=resume,
            validate=job.validates,
        )
        trainer.fit(module, datamodule=job.datamodule, ckpt_path=ckpt)
        if dist.is_main():
            resume.remove()  # the entry keeps the epoch files; the training state is not needed any more
        return {
            "saved_epochs": sorted(keep_epochs | needed | {0, T}),
            "metrics": evaluate_splits(module, job.datamodule),
            "steps": trainer.global_step,
            "seconds": clock.seconds,
        }

    def read(staging: Path) -> dict[str, Any]:  # dense.weights: the files, the final one measured
        assert job.dense_weights is not None
        files = {**job.rewind_weights, T: job.dense_weights}
        named = ", ".join(f"{p} (epoch {e})" for e, p in files.items())
        log.info("reading the dense model from %s into the cache", named)
        net = job.build_net()
        for epoch, path in sorted(files.items()):  # epoch T last: the net holds the final weights
            net.load_state_dict(read_weights(path))
            if dist.is_main():
                save_state(staging / epoch_file(epoch), net.state_dict())
        metrics = evaluate_splits(make_module(job, net), job.datamodule)
        return {"saved_epochs": sorted(files), "metrics": metrics, "steps": 0, "seconds": 0.0}

    make = read if job.dense_weights is not None else train
    if dist.is_main():
        run, cached = cache.get_or_train(spec, needed, make)
        dist.barrier()  # (DDP) the other ranks read the entry once it is published
    else:
        found, cached = cache.load(spec_hash(spec)), True
        if found is None:
            make(cache.partial(spec_hash(spec)))
            dist.barrier()
            found = cache.load(spec_hash(spec))
        assert found is not None, "rank 0 did not publish the dense run"
        run = found
    measured = ", ".join(f"{k} {v:.4f}" for k, v in run.meta["metrics"].items() if k.startswith("test_"))
    how = "cached" if cached else "read" if job.dense_weights is not None else "trained"
    log.info("dense run %s (%s): %s", run.hash, how, measured)
    return run, cached


def dense_metrics(job: Job, dense: DenseRun) -> dict[str, float]:
    """The dense model's metrics on val and test, for the job's task: the cache entry's, or
    measured now from its final weights when the run that trained it measured other metrics
    (the metrics are not part of the dense run: a new one does not retrain it)."""
    names = Task.of(job.task, job.datamodule.num_classes).names
    wanted = {f"{split}_{name}" for split in job.datamodule.splits for name in names}
    stored = dense.meta["metrics"]
    if wanted <= stored.keys():
        return {k: v for k, v in stored.items() if k in wanted}
    log.info("measuring the dense model's metrics (%s)", ", ".join(sorted(wanted - stored.keys())))
    with torch.random.fork_rng(devices=[]):  # the job's RNG stream stays as it was
        net = job.build_net()
    net.load_state_dict(dense.state(dense.epochs))
    return evaluate_splits(make_module(job, net), job.datamodule)


def rewound_weights(job: Job, dense: DenseRun, step: int, log_dir: Path) -> dict[str, torch.Tensor]:
    """The dense run's weights and buffers at ``step``: its epoch file when the step starts an
    epoch, else :func:`replay_dense` up to it."""
    if step % job.steps_per_epoch == 0:
        return dense.state(step // job.steps_per_epoch)
    return replay_dense(job, dense, step, log_dir / "dense_replay")


def replay_dense(job: Job, dense: DenseRun, step: int, log_dir: Path) -> dict[str, torch.Tensor]:
    """Train the dense recipe again from its init (epoch 0 of ``dense``) for ``step`` steps.

    The dense run is a pure function of its seed (the init, each epoch's order and every RNG
    draw are seeded), so this gives the weights the dense run had at that step, as OpenLTH's
    rewinding to ``500it`` does; it costs ``step`` steps, and the cache keeps epoch files only."""
    log.info("replaying the dense run to step %d (rewind point inside epoch %d)", step, step // job.steps_per_epoch)
    net, module = dense_recipe(job)
    net.load_state_dict(dense.state(0))  # the same init, read back rather than trusted to the RNG
    trainer = make_trainer(
        job.trainer,
        max_epochs=dense.epochs,
        max_steps=step,
        callbacks=list(job.callbacks),
        log_dir=log_dir,
        progress_bar=False,
        validate=job.validates,
    )
    trainer.fit(module, datamodule=job.datamodule)
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


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
    *,
    pruner_factory: Callable[[nn.Module], Pruner],
    plan: RoundPlan,
    finetune_lr: float | None,
    log_dir: Path,
    on_round_end: Callable[[RoundResult, PruneModule, Pruner], None],
    gradual: GradualPlan | None = None,
) -> Rounds:
    """The stage for the dense model of ``dense``, pruned round by round and retrained as ``plan``
    says; with ``gradual`` (prune.schedule=gradual) the mask follows its ramp through the rounds
    (lit/gradual.py). :func:`fit_rounds` runs it alone, a fused group (fused/) with others."""
    net = job.build_net()
    net.load_state_dict(dense.state(dense.epochs))
    module = make_module(job, net)
    pruner = pruner_factory(net)
    rewind_state = rewound_weights(job, dense, plan.rewind_step, log_dir) if plan.rewind_step is not None else None

    def round_start_weights(round_: int) -> dict[str, torch.Tensor] | None:
        if plan.weights == "rewind":
            return rewind_state
        if plan.weights == "reinit":  # a fresh draw per round, reproducible from (seed, round)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(job.seed, round_))
                return job.build_net().state_dict()
        return None

    lr: LRSchedule | float = job.schedule
    if plan.lr == "constant":
        lr = finetune_lr if finetune_lr is not None else job.schedule.last_step_lr(job.steps_per_epoch)

    cycle_kind = functools.partial(GradualCycle, gradual=gradual) if gradual is not None else PruneRetrainCycle
    cycle = cycle_kind(
        net=net,
        pruner=pruner,
        plan=plan,
        enforcer=MaskEnforcer(net),
        evaluate=lambda: evaluate_splits(module, job.datamodule),
        round_start_weights=round_start_weights,
        lr=lr,
        steps_per_epoch=job.steps_per_epoch,
        on_round_end=lambda result: on_round_end(result, module, pruner),
    )
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
