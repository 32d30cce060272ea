"""A fused group: the jobs whose rounds can train in lockstep, trained in one Lightning fit.

Every arm is an ordinary job (experiment.Experiment) in its own dir, with its own lock,
status, job-cache entry, dense run, records, masks and artifacts: the group enters each
arm's session, prepares each arm as an unfused job would (Experiment.prepare), fits the
stacked arms together (FusedModule, FusedCycle), then finishes each arm (Experiment.finish).
A failure or a kill ends every arm's session with it, each status saying so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from torch import nn

from prune_exp.checkpoint import RESUME_FILE, Persist, ResumeCheckpoint
from prune_exp.experiment import Experiment, JobSession, PreparedJob
from prune_exp.fused.batches import FusedBatches
from prune_exp.fused.curves import ArmCurves
from prune_exp.fused.cycle import FusedCycle
from prune_exp.fused.module import FusedModule
from prune_exp.fused.stack import StackedNets
from prune_exp.jobfiles import RETRAIN_LOG_DIR
from prune_exp.lit.gradual import GradualCycle
from prune_exp.logs import ResumableCSVLogger
from prune_exp.stages import Job, Rounds, make_trainer
from prune_exp.task import Task

log = logging.getLogger(__name__)


def group_id(experiments: Sequence[Experiment]) -> str:
    """A name for the group, the same on every run of it: a digest of its arms' configs."""
    digest = hashlib.sha256("\n".join(sorted(e.fingerprint for e in experiments)).encode())
    return digest.hexdigest()[:12]


def why_not_fused(prepared: Sequence[PreparedJob]) -> str | None:
    """Why these prepared jobs cannot train in lockstep, or None when they can: the same round
    structure (rounds x epochs, steps per epoch), batch shapes, network, optimizer (but its LR
    and schedule), trainer and loss; every arm trains; no gradual pruning; no 2-D or 3-D
    convolutions on a CPU (slower fused there)."""
    first = prepared[0]
    for p in prepared:
        if not p.rounds.plan.trains:
            return f"strategy {p.rounds.plan.strategy} does not train"
        if isinstance(p.rounds.cycle, GradualCycle):
            return "prune.schedule=gradual prunes inside the rounds"
    checks = {
        "the rounds (rounds x epochs)": lambda p: (p.rounds.epochs, p.rounds.plan.epochs),
        "the steps per epoch": lambda p: p.job.steps_per_epoch,
        "the training batches' shape": lambda p: (
            p.job.datamodule.input_shape,
            len(p.job.datamodule.train),
            p.job.datamodule.batch_size,
        ),
        "the network": lambda p: [(k, v.shape) for k, v in p.rounds.module.net.state_dict().items()],
        "the optimizer (but its LR and schedule)": lambda p: dataclasses.replace(p.job.optim, lr=0.0, schedule=None),
        "the trainer": lambda p: p.job.trainer,
        "the task": lambda p: p.job.task,
    }
    for what, key in checks.items():
        if any(key(p) != key(first) for p in prepared):
            return f"the arms differ in {what}"
    if _on_cpu(first.job.trainer.accelerator) and _has_2d_or_3d_conv(first.rounds.module.net):
        return (
            "on CPU, N arms' 2-D/3-D convolutions vmapped into one grouped convolution run slower "
            "than each arm's own (docs/benchmarks.md: CIFAR ResNet-20, 0.35x at 9 arms)"
        )
    return None


def _on_cpu(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` setting trains on the CPU on this machine."""
    if accelerator != "auto":
        return accelerator == "cpu"
    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def _has_2d_or_3d_conv(net: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.Conv3d)) for m in net.modules())


def fit_group(
    jobs: Sequence[Job],
    rounds: Sequence[Rounds],
    log_dir: Path,
    *,
    resume: ResumeCheckpoint | None = None,
    persist: Sequence[Callback] = (),
    callbacks: Sequence[Callback] = (),
    arm_logs: Sequence[tuple[Path, Logger | None]] = (),
) -> None:
    """Train the jobs' rounds together, each arm as its unfused job would. With ``resume``,
    continue from the group's checkpoint if there is one, and checkpoint into it (the
    ``persist`` callbacks carry the arms' own state, e.g. their records, through it, as
    stages.fit_rounds does for one job). ``callbacks`` join the trainer, after the FusedCycle.
    ``arm_logs``: each arm's CSV log dir and tracker (or None), which get its train loss."""
    first = jobs[0]
    ckpt = resume.resume_from() if resume is not None else None
    keep = resume.resumed_epoch if resume is not None else None
    arm_loggers = [[ResumableCSVLogger(str(d), keep), *([t] if t else [])] for d, t in arm_logs]
    stacked = StackedNets([r.module.net for r in rounds])
    trainer = make_trainer(
        first.trainer,
        max_epochs=rounds[0].epochs,
        callbacks=[FusedCycle(stacked, rounds), ArmCurves(arm_loggers), *persist, *callbacks],
        log_dir=log_dir,
        progress_bar=first.progress_bar,
        resume=resume,
        loggers=[logger for arm in arm_loggers for logger in arm],
        validate=False,  # each arm is measured at its round's start and end, on its own network
    )
    for job in jobs:  # the arms' data where the group trains, before their loaders are made
        if callable(place := getattr(job.datamodule, "place", None)):
            place(trainer.strategy.root_device)
    batches = FusedBatches([job.datamodule.train_dataloader() for job in jobs])
    module = FusedModule(stacked, first.optim, Task.of(first.task, first.datamodule.num_classes), batches)
    pl.seed_everything(first.seed, verbose=False)
    if ckpt:
        log.info("resuming the fused group from %s", ckpt)
    trainer.fit(module, ckpt_path=ckpt)


def run_group(experiments: Sequence[Experiment], log_dir: Path, callbacks: Sequence[Callback] = ()) -> list[float]:
    """Run the jobs as one fused group; each job's value. Jobs done before, or found in the job
    cache, drop out; if the rest cannot fuse (:func:`why_not_fused`) each trains alone.
    ``log_dir`` holds the group's log and its checkpoint: a group killed and run again with
    the same jobs and ``log_dir`` resumes from its last epoch end."""
    gid = group_id(experiments)
    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(e.session()) for e in experiments]
        todo = _to_train(experiments, sessions)
        for e, _ in todo:
            e.fused_group = gid
        prepared = [e.prepare(s.base, s.status) for e, s in todo]
        reason = why_not_fused(prepared) if prepared else None
        if reason is not None:
            log.info("fused group %s: %s; its %d jobs train one after another", gid, reason, len(prepared))
            for (e, _), p in zip(todo, prepared, strict=True):
                e.fused_group = None
                p.recorder.info = dataclasses.replace(p.recorder.info, fused_group=None)
                e.fit(p)
        elif prepared:
            log.info("fused group %s: %d arms train together", gid, len(prepared))
            # under the training arms' own id: a rerun in which other arms train (one found in the
            # job cache meanwhile) never resumes from this set's checkpoint
            _fit_resumable(prepared, [e.job_dir for e, _ in todo], log_dir / group_id([e for e, _ in todo]), callbacks)
        for (e, s), p in zip(todo, prepared, strict=True):
            s.value = e.finish(p)
            _publish(e)
    return [s.value for s in sessions]  # type: ignore[misc]


def _to_train(experiments: Sequence[Experiment], sessions: Sequence[JobSession]) -> list[tuple[Experiment, JobSession]]:
    """The jobs neither done before nor restored from the job cache (those get their value)."""
    todo = []
    for e, s in zip(experiments, sessions, strict=True):
        if s.value is None:
            e.set_up()
            cached = e.job_cache()
            if cached is not None:
                cache, key = cached
                with cache.lock(key):  # as Experiment._run: a restore never races a publish
                    s.value = e.restore(cache, key, s.base)
        if s.value is None:
            todo.append((e, s))
    return todo


def _fit_resumable(
    prepared: Sequence[PreparedJob], job_dirs: Sequence[Path], arms_dir: Path, callbacks: Sequence[Callback]
) -> None:
    """fit_group with the group's checkpoint in ``arms_dir`` (removed once the group is done),
    each arm's records carried through it, its curves in its job dir and tracker."""
    resume = ResumeCheckpoint(arms_dir / RESUME_FILE, prepared[0].job.trainer.checkpoint_every_s)
    trackers = [p.tracker.logger if p.tracker else None for p in prepared]
    fit_group(
        [p.job for p in prepared],
        [p.rounds for p in prepared],
        arms_dir,
        resume=resume,
        persist=[Persist(f"records[{i}]", p.writer) for i, p in enumerate(prepared)],
        callbacks=callbacks,
        arm_logs=[(d / RETRAIN_LOG_DIR, t) for d, t in zip(job_dirs, trackers, strict=True)],
    )
    resume.remove()


def _publish(e: Experiment) -> None:
    """A trained job into the job cache, as Experiment._run publishes one trained alone."""
    cached = e.job_cache()
    if cached is not None:
        cache, key = cached
        with cache.lock(key):
            cache.publish(key, e.job_dir)
