"""The spine of a job: what one job does, start to end, and the same for N jobs whose rounds
train together as the arms of a fused group. Read it as the algorithm; each step is one call.

A job is resumable: started again in the same job dir with the same config (a SLURM requeue,
or a rerun with ``hydra.run.dir`` / ``hydra.sweep.dir`` of the killed run), it continues from
its last epoch; a job that finished does no training and returns its result. A job dir that
holds a job of a different config is refused.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from prune_exp.config import check_accelerator
from prune_exp.dist import is_main
from prune_exp.job.arm import finish, prepare
from prune_exp.job.dense_group import train_dense_together
from prune_exp.job.experiment import Experiment, job_value
from prune_exp.job.train import lockstep_group, train
from prune_exp.store.files import RESUME_FILE
from prune_exp.store.job_cache import JobCache

log = logging.getLogger("prune_exp")


def run_job(job: Experiment) -> float:
    """One job, trained alone; its value (what Hydra's sweeper gets)."""
    (value,) = run_jobs([job])
    return value


def run_jobs(
    jobs: Sequence[Experiment], group_dir: Path | None = None, callbacks: Sequence[Callback] = ()
) -> list[float]:
    """Each job's value. With ``group_dir`` (hydra/launcher=fused) the jobs that train do so in
    lockstep, their group's log and checkpoint under that dir; without, each alone."""
    with contextlib.ExitStack() as held:
        for e in jobs:  # the job dir's lock and status.json
            held.enter_context(e.status.held())
        todo = [e for e in jobs if e.status.value is None]  # a job done before keeps its value
        for e in todo:
            check_accelerator(e.cfg.trainer.accelerator)
            held.enter_context(running(e))
            e.set_up()
        caches = held.enter_context(job_cache_locks(todo))  # the job cache: restore, train, publish
        todo = [e for e in todo if not restored(e, caches.get(id(e)))]
        group = lockstep_group(jobs, todo, group_dir)
        fresh = train_dense_together(todo, group_dir) if group and group_dir else set()  # one stacked fit
        arms = [prepare(e, group, dense_trained=id(e) in fresh) for e in todo]  # the dense stage; the rounds built
        train(arms, group_dir if group else None, callbacks)  # the one fork: alone or in lockstep
        for arm in arms:
            value = finish(arm)  # the artifacts
            publish(arm.job, caches.get(id(arm.job)))
            arm.job.status.done(value)
    return [e.status.value for e in jobs]  # type: ignore[misc]


@contextlib.contextmanager
def running(e: Experiment) -> Iterator[None]:
    """The job's status says running; its tracker closes with the job's outcome."""
    e.status.start()
    try:
        yield
    finally:
        if e.tracker is not None and is_main():
            outcome = "success" if e.status.value is not None else "failed"
            try:
                e.tracker.close(outcome)
            except Exception as err:  # the job's own outcome stands; the tracker's failure is logged
                log.warning("the tracker did not close cleanly: %s", err)


@contextlib.contextmanager
def job_cache_locks(jobs: Sequence[Experiment]) -> Iterator[dict[int, tuple[JobCache, str]]]:
    """Each job's job cache and key (by ``id`` of the job; none where a job always trains), with
    every key's lock held, taken in one global order (sorted) so that two groups that share
    keys cannot deadlock: a job is restored, or trained and published, under its key's lock."""
    caches = {id(e): c for e in jobs if (c := e.job_cache()) is not None}
    distinct = {(str(cache.dir), key): (cache, key) for cache, key in caches.values()}  # a lock is taken once
    with contextlib.ExitStack() as locks:
        for where in sorted(distinct):
            cache, key = distinct[where]
            locks.enter_context(cache.lock(key))
        yield caches


def restored(e: Experiment, cached: tuple[JobCache, str] | None) -> bool:
    """Whether the job cache held the job: its records and files are then in its dir, its
    tracker has them, and its status is done with its value."""
    if cached is None:
        return False
    cache, key = cached
    rows = cache.restore(key, e.job_dir, e.overrides)
    if rows is None:
        return False
    log.info("job found in the job cache (%s): its records and files, nothing trained", key)
    (e.job_dir / RESUME_FILE).unlink(missing_ok=True)  # a killed attempt's, if any
    if e.tracker is not None and is_main():  # the tracker gets the config and the rounds
        e.tracker.start()
        for row in rows:
            e.tracker.record(row)
    e.status.done(job_value(rows[-1], e.cfg.select_metric), job_cached=key)
    return True


def publish(e: Experiment, cached: tuple[JobCache, str] | None) -> None:
    """A trained job into the job cache (its key's lock is held)."""
    if cached is not None:
        cache, key = cached
        cache.publish(key, e.job_dir)
