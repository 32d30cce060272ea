"""The dense runs of a fused group's jobs, trained together before the jobs' dense stages
(job/dense.py), which then find them in the cache.

The distinct dense runs the jobs need and the cache lacks (the main job's: one per seed) train
as the arms of one stacked network (fused/dense.py), each published as its own cache entry with
its own epoch files, as a run trained alone is. The cache keys do not depend on the path: a
fused and an unfused run of one config are the same run up to float rounding, and whichever
path trains an entry first is what every later job gets (its ``meta.json`` says which:
``trained_by``).

Locks: a group holds its jobs' job-cache locks (job/spine.job_cache_locks, sorted) and then
takes the dense runs' locks, sorted too. Every job takes its job-cache locks before a dense
lock, so all processes take locks in one global order and two groups that share entries
cannot deadlock.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from prune_exp.fused.dense import fit_dense_group
from prune_exp.job.experiment import Experiment
from prune_exp.store.dense_cache import DenseCache, spec_hash

log = logging.getLogger("prune_exp")


def _missing(todo: Sequence[Experiment]) -> dict[str, tuple[Experiment, dict]]:
    """The dense runs (by hash) that the jobs train and the cache lacks, each with the first
    job that needs it and its spec."""
    wanted: dict[str, tuple[Experiment, dict]] = {}
    for e in todo:
        if e.recipe().dense_weights is not None:  # read from files, not trained
            continue
        spec = e.dense_spec(e.data_digest)
        h = spec_hash(spec)
        if h not in wanted and DenseCache(e.cfg.paths.cache_dir).load(h) is None:
            wanted[h] = (e, spec)
    return wanted


def train_dense_together(todo: Sequence[Experiment], group_dir: Path) -> set[int]:
    """Train the dense runs that ``todo`` (a fused group's jobs) need and the cache lacks, when
    there are two or more, in one stacked fit with its checkpoint under ``group_dir``; the ids
    of the jobs that count as having trained them (the first job of each run: its records say
    ``dense_cached`` false, as an unfused sweep's first job of a seed's do)."""
    wanted = _missing(todo)
    if len(wanted) < 2:
        return set()
    cache = DenseCache(todo[0].cfg.paths.cache_dir)  # a group's jobs share their cache dir
    with contextlib.ExitStack() as locks:
        for h in sorted(wanted):
            locks.enter_context(cache.lock(h))
        # another process may have published some while we waited
        runs = {h: run for h, run in wanted.items() if cache.load(h) is None}
        if len(runs) < 2:
            return set()
        hashes = sorted(runs)
        jobs = [runs[h][0] for h in hashes]
        for h in hashes:
            cache.partial(h).mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:12]
        trained = fit_dense_group(
            [e.recipe() for e in jobs],
            [cache.partial(h) for h in hashes],
            [e.dense_epochs_kept() | e.plan.dense_epochs_needed for e in jobs],
            group_dir / f"dense-{digest}",
        )
        for h, meta in zip(hashes, trained, strict=True):
            cache.publish(h, runs[h][1], {"trained_by": f"a fused group of {len(hashes)}", **meta})
        log.info("dense runs %s trained together and published", ", ".join(hashes))
    return {id(e) for e in jobs}
