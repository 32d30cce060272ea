"""The preflight of a sweep: every job composed (job_configs.JobConfigs, the composition the
launcher then runs) and checked (preflight.py) before the first one starts, and the dry run
(``prune-exp -m ... --cfg job``): the same, then each job listed, nothing trained or written.

The checks run in three passes, so that the cheap ones fail first: each job's own values (its
composition, types and ranges, the launcher), then what needs several jobs (check_selection),
then data, model, directories and caches (each data set, model and cache entry once)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from prune_exp.jobfiles import MULTIRUN_FILE
from prune_exp.preflight import (
    check_job,
    check_launch,
    check_outputs,
    check_selection,
    check_strategy_names,
    output_dir,
    preflight_errors,
    where_in_sweep,
)

log = logging.getLogger("prune_exp")


@dataclass(frozen=True)
class PlannedJob:
    """A job of the sweep, as the preflight found it."""

    num: int
    overrides: list[str]
    job_dir: Path | None  # None: hydra.sweep.subdir is not the job's number (known when it runs)
    dense_hash: str
    dense_cached: bool  # the dense cache holds its dense run
    job_cached: bool  # the job cache holds the finished job (job_cache=true only)


def check_sweep(
    config: DictConfig,
    jobs: list[list[str]],
    composer: Any,
    *,
    dry_run: bool = False,
    on_job: Callable[[list[str], DictConfig, Any], None] | None = None,
) -> list[PlannedJob]:
    """Every job of the sweep composed by ``composer`` (a JobConfigs) and checked; the first
    bad one exits with one line. With ``dry_run``, also whether the caches hold each job.
    ``on_job(overrides, config, run_config)``: shown each job once its values are checked (the
    fused launcher keeps what it needs of it)."""
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_"))
    with preflight_errors():
        sweep_dir = output_dir(config, "hydra.sweep.dir")
    numbered = OmegaConf.to_container(config.hydra.sweep)["subdir"] == "${hydra.job.num}"
    configs = []
    for overrides in jobs:  # every job's values first: a bad one fails before any data is made
        with preflight_errors(where_in_sweep(overrides)):
            job_cfg, rc = composer.checked(overrides)
            check_launch(job_cfg, launcher, multirun=True)
            if on_job is not None:
                on_job(overrides, job_cfg, rc)
            configs.append((job_cfg, rc))
    with preflight_errors():
        check_selection([c for c, _ in configs])
        check_strategy_names([rc for _, rc in configs])
    seen: dict[Any, Any] = {}
    planned = []
    for num, overrides in enumerate(jobs):
        job_cfg, rc = configs[num]
        configs[num] = None  # type: ignore[call-overload]  # done with it: a big sweep's memory
        job_dir = sweep_dir / str(num) if numbered else None
        with preflight_errors(where_in_sweep(overrides)):
            checked = check_job(job_cfg, seen, rc)
            dense_hash = check_outputs(job_cfg, job_dir, "hydra.sweep.dir", checked, seen)
            cached = _cached(job_cfg, rc, checked.digest, dense_hash) if dry_run else (False, False)
        planned.append(PlannedJob(num, list(overrides), job_dir, dense_hash, *cached))
    return planned


def _cached(job_cfg: DictConfig, rc: Any, digest: str, dense_hash: str) -> tuple[bool, bool]:
    """Whether the dense cache holds the job's dense run and the job cache the job."""
    from prune_exp.cache import DenseCache
    from prune_exp.job_cache import DamagedEntry, JobCache, job_key
    from prune_exp.run import config_fingerprint

    cache_dir = str(OmegaConf.select(job_cfg, "paths.cache_dir"))
    dense = DenseCache(cache_dir).entry(dense_hash).is_dir()
    if not rc.job_cache:
        return dense, False
    cache, key = JobCache(cache_dir), job_key(config_fingerprint(job_cfg), digest, dense_hash)
    try:  # a hit only if the job would take it: the entry verified as the job verifies it
        return dense, cache.entry(key).is_dir() and bool(cache.verify(key))
    except (DamagedEntry, OSError):
        return dense, False


def print_dry_run(planned: list[PlannedJob], sweep_dir: str) -> None:
    """The dry run's listing: every job, where it would write, and what the caches hold."""
    print(f"dry run: {len(planned)} jobs, each composed and checked; nothing trained or written")
    print(f"sweep dir: {sweep_dir}")
    for job in planned:
        where = str(job.job_dir) if job.job_dir is not None else "(hydra.sweep.subdir, when it runs)"
        cache = "job cache: hit" if job.job_cached else "dense cache: hit" if job.dense_cached else "trains"
        print(f"#{job.num} {' '.join(job.overrides) or '(no overrides)'}  ->  {where}  [{cache}]")
    hits = sum(j.job_cached for j in planned)
    dense = len({j.dense_hash for j in planned})
    cached = len({j.dense_hash for j in planned if j.dense_cached})
    print(f"{hits} of {len(planned)} jobs in the job cache; {cached} of {dense} dense runs in the dense cache")


def run_batches(config: DictConfig, batches: list[list[list[str]]], launcher: Any) -> list[Any]:
    """Hydra's basic sweeper's loop after its check: ``multirun.yaml`` saved (atomically), each
    batch handed to ``launcher``, a failed job's exception raised. A full disk ends the sweep
    with one line (run.atomic_hydra_files keeps Hydra's own job files whole)."""
    from prune_exp.atomic import write_text
    from prune_exp.errors import disk_full

    sweep_dir = Path(str(config.hydra.sweep.dir))
    returns, first = [], 0
    try:
        write_text(sweep_dir / MULTIRUN_FILE, OmegaConf.to_yaml(config))
        for batch in batches:
            results = launcher.launch(batch, initial_job_idx=first)
            for r in results:
                _ = r.return_value  # as Hydra's: raises a job's exception
            first += len(batch)
            returns.append(results)
    except Exception as e:
        full = disk_full(e, [("hydra.sweep.dir", sweep_dir)])
        if full is None:
            raise
        sys.exit(f"prune-exp: {full}")
    return returns
