"""The one fork of a job's spine: its rounds trained alone, or N jobs' rounds trained in
lockstep as the arms of one stacked network (a fused group, fused/group.py). Everything before
and after the fork (status, caches, records, artifacts) is the same code for both.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from prune_exp.fused.group import fit_group, slower_fused_here
from prune_exp.job.arm import Arm
from prune_exp.job.experiment import Experiment
from prune_exp.job.rounds import fit_rounds
from prune_exp.store.checkpoint import Persist, ResumeCheckpoint
from prune_exp.store.files import RESUME_FILE, RETRAIN_LOG_DIR

log = logging.getLogger("prune_exp")


def group_id(jobs: Sequence[Experiment]) -> str:
    """A name for a fused group, the same on every run of it: a digest of its jobs' configs."""
    digest = hashlib.sha256("\n".join(sorted(e.fingerprint for e in jobs)).encode())
    return digest.hexdigest()[:12]


def lockstep_group(jobs: Sequence[Experiment], todo: Sequence[Experiment], group_dir: Path | None) -> str | None:
    """The fused group's id when ``todo`` (the jobs of ``jobs`` that train) train in lockstep;
    None when each trains alone: no group asked for, or stacked arms train slower on this
    machine (the launcher grouped them by config; the machine is known only here)."""
    if group_dir is None or not todo:
        return None
    gid, first = group_id(jobs), todo[0]
    with torch.random.fork_rng(devices=[]):  # the job's RNG stream stays as it was
        reason = slower_fused_here(first.cfg.trainer.accelerator, first.build_net())
    if reason is not None:
        log.info("fused group %s: %s; its %d jobs train one after another", gid, reason, len(todo))
        return None
    log.info("fused group %s: %d arms train together", gid, len(todo))
    return gid


def train(arms: Sequence[Arm], group_dir: Path | None, callbacks: Sequence[Callback] = ()) -> None:
    """The arms' rounds: in lockstep with the group's log and checkpoint under ``group_dir``,
    or, without one, each alone. ``callbacks`` join the trainer."""
    if group_dir is None:
        for arm in arms:
            fit_alone(arm, callbacks)
    elif arms:
        # under the training arms' own id: a rerun in which other arms train (one found in the
        # job cache meanwhile) never resumes from this set's checkpoint
        fit_lockstep(arms, group_dir / group_id([a.job for a in arms]), callbacks)


def fit_alone(arm: Arm, callbacks: Sequence[Callback] = ()) -> None:
    """The rounds, trained alone (job/rounds.fit_rounds): resumable, with the tracker's curves."""
    tracker = arm.tracker
    fit_rounds(
        arm.recipe,
        arm.rounds,
        log_dir=arm.job.job_dir / RETRAIN_LOG_DIR,
        resume=arm.resume,
        persist=[Persist("records", arm.writer)],
        callbacks=[*(tracker.callbacks if tracker else ()), *callbacks],
        loggers=[tracker.logger] if tracker else (),
    )


def fit_lockstep(arms: Sequence[Arm], arms_dir: Path, callbacks: Sequence[Callback]) -> None:
    """fit_group with the group's checkpoint in ``arms_dir`` (removed once the group is done),
    each arm's records carried through it, its curves in its job dir and tracker."""
    resume = ResumeCheckpoint(arms_dir / RESUME_FILE, arms[0].recipe.trainer.checkpoint_every_s)
    fit_group(
        [a.recipe for a in arms],
        [a.rounds.module for a in arms],
        [a.rounds.cycle.arm for a in arms],
        arms[0].rounds.epochs,
        arms_dir,
        resume=resume,
        persist=[Persist(f"records[{i}]", a.writer) for i, a in enumerate(arms)],
        callbacks=callbacks,
        arm_logs=[(a.job.job_dir / RETRAIN_LOG_DIR, a.tracker.logger if a.tracker else None) for a in arms],
    )
    resume.remove()
