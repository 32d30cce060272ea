"""The dense stage: the (shared, cached) dense run a job prunes, trained once per config and
data (store/dense_cache.py), or read from given weights; and the dense run's weights at any step, for
rewinding.

The stage checkpoints itself at every epoch end and, started again after a kill, resumes from
that checkpoint (see checkpoint.py).
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

import torch

from prune_exp import dist
from prune_exp.lit.callbacks import RewindPointSaver
from prune_exp.lit.task import Task
from prune_exp.lit.trainer import Job, StopAtStep, dense_recipe, evaluate_splits, make_module, make_trainer
from prune_exp.store.checkpoint import Persist, ResumeCheckpoint, Stopwatch, read_weights
from prune_exp.store.columns import metric_key
from prune_exp.store.dense_cache import DenseCache, DenseRun, save_state, spec_hash
from prune_exp.store.files import DENSE_REPLAY_DIR, RESUME_FILE, epoch_file

log = logging.getLogger(__name__)


def dense_stage(
    job: Job, cache: DenseCache, spec: dict, keep_epochs: set[int], needed: set[int]
) -> tuple[DenseRun, bool]:
    """The dense run for ``spec``: from the cache, or trained now (once, under a lock), or read
    from ``job.dense_weights`` and measured.

    Under DDP, rank 0 takes the lock, trains and publishes; the other ranks train along
    (writing nothing), wait for it to publish, then read the entry like any later job."""
    if job.dense_weights is not None:
        make = functools.partial(_read_dense, job)
    else:
        make = functools.partial(_train_dense, job, keep_epochs | needed)
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


def _train_dense(job: Job, keep_epochs: set[int], staging: Path) -> dict[str, Any]:
    """Train the dense run into ``staging``, saving the weights at the start of every epoch of
    ``keep_epochs``, of 0 and of T; its metadata."""
    T = math.ceil(job.schedule.total_epochs)  # the last epoch may be partial (dense.iterations)
    steps = round(job.schedule.total_epochs * job.steps_per_epoch)
    resume = ResumeCheckpoint(staging / RESUME_FILE, job.trainer.checkpoint_every_s)
    ckpt = resume.resume_from()
    how = "resuming" if ckpt else "training"
    log.info("%s the dense model (%g epochs, %d steps) into the cache", how, job.schedule.total_epochs, steps)
    net, module = dense_recipe(job)
    saver = RewindPointSaver(  # epoch T's file: the final weights, also after a partial last epoch
        net,
        keep_epochs | {0, T},
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
        "saved_epochs": sorted(keep_epochs | {0, T}),
        "metrics": evaluate_splits(module, job.datamodule),
        "steps": trainer.global_step,
        "seconds": clock.seconds,
    }


def _read_dense(job: Job, staging: Path) -> dict[str, Any]:
    """dense.weights: the given files into ``staging``, the final one measured; its metadata."""
    assert job.dense_weights is not None
    files = {**job.rewind_weights, math.ceil(job.schedule.total_epochs): job.dense_weights}
    named = ", ".join(f"{p} (epoch {e})" for e, p in files.items())
    log.info("reading the dense model from %s into the cache", named)
    net = job.build_net()
    for epoch, path in sorted(files.items()):  # epoch T last: the net holds the final weights
        net.load_state_dict(read_weights(path))
        if dist.is_main():
            save_state(staging / epoch_file(epoch), net.state_dict())
    metrics = evaluate_splits(make_module(job, net), job.datamodule)
    return {"saved_epochs": sorted(files), "metrics": metrics, "steps": 0, "seconds": 0.0}


def dense_metrics(job: Job, dense: DenseRun) -> dict[str, float]:
    """The dense model's metrics on val and test, for the job's task: the cache entry's, or
    measured now from its final weights when the run that trained it measured other metrics
    (the metrics are not part of the dense run: a new one does not retrain it)."""
    names = Task.of(job.task, job.datamodule.num_classes).names
    wanted = {metric_key(split, name) for split in job.datamodule.splits for name in names}
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
    return replay_dense(job, dense, step, log_dir / DENSE_REPLAY_DIR)


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
