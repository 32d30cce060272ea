"""The preflight of a sweep: every job composed (job_configs.JobConfigs, the composition the
launcher then runs) and checked (preflight.py) before the first one starts, and the dry run
(``prune-exp -m ... --cfg job``): the same, then each job listed, nothing trained or written.

The checks run in three passes, so that the cheap ones fail first: each job's own values (its
composition, types and ranges, the launcher), then what needs several jobs (check_selection),
then data, model, directories and caches (each data set, model and cache entry once)."""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from prune_exp.app.preflight import (
    check_job,
    check_launch,
    check_outputs,
    check_selection,
    check_strategy_names,
    output_dir,
    preflight_errors,
    where_in_sweep,
)
from prune_exp.errors import ConfigError, PruneExpError
from prune_exp.store.files import MULTIRUN_FILE, STATUS_FILE

log = logging.getLogger("prune_exp")


@dataclass(frozen=True)
class PlannedJob:
    """A job of the sweep, as the preflight found it."""

    num: int
    overrides: list[str]
    job_dir: Path | None  # None: hydra.sweep.subdir that only the running job can resolve
    dense_hash: str
    dense_cached: bool  # the dense cache holds its dense run
    job_cached: bool  # the job cache holds the finished job (job_cache=true only)
    done: bool  # its job dir holds it, done (a rerun of the sweep trains nothing for it)


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
        check_jobs_listed(jobs)
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
        job_dirs = sweep_job_dirs(config, composer, jobs, sweep_dir)
    seen: dict[Any, Any] = {}
    planned = []
    for num, overrides in enumerate(jobs):
        job_cfg, rc = configs[num]
        configs[num] = None  # type: ignore[call-overload]  # done with it: a big sweep's memory
        with preflight_errors(where_in_sweep(overrides)):
            checked = check_job(job_cfg, seen, rc)
            dense_hash = check_outputs(job_cfg, job_dirs[num], "hydra.sweep.dir", checked, seen)
            found = _found(job_cfg, rc, job_dirs[num], checked.digest, dense_hash) if dry_run else (False,) * 3
        planned.append(PlannedJob(num, list(overrides), job_dirs[num], dense_hash, *found))
    return planned


def check_jobs_listed(jobs: list[list[str]]) -> None:
    """ConfigError for a sweep of no job, or with one job twice (a value given twice)."""
    if not jobs:
        raise ConfigError(
            "the sweep has no job (a range() that is empty, a glob() that matches no option?); "
            "allowed: at least one value for every swept key"
        )
    first: dict[tuple[str, ...], int] = {}
    for num, overrides in enumerate(jobs):
        other = first.setdefault(tuple(overrides), num)
        if other != num:
            raise ConfigError(
                f"the sweep has the job [{' '.join(overrides)}] twice (#{other} and #{num}): a value given twice "
                "would count one seed as two in the report; allowed: each value of a swept key once"
            )


def sweep_job_dirs(config: DictConfig, composer: Any, jobs: list[list[str]], sweep_dir: Path) -> list[Path | None]:
    """Each job's dir (``hydra.sweep.dir``/``hydra.sweep.subdir``, as Hydra resolves it for the
    job); None where only the running job can resolve it (its SLURM id, the ``hydra:``
    resolver). ConfigError if two jobs would share a dir."""
    subdir = str(OmegaConf.to_container(config.hydra.sweep)["subdir"])
    if subdir == "${hydra.job.num}":  # the default: no composition needed
        return [sweep_dir / str(num) for num in range(len(jobs))]
    if "job.id" in subdir or "${hydra:" in subdir:
        return [None] * len(jobs)
    dirs: list[Path | None] = []
    for num, overrides in enumerate(jobs):
        cfg = composer.config(overrides)
        with open_dict(cfg):
            cfg.hydra.job.num = num
        dirs.append(sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir")))
    shared = next((d for d, n in Counter(dirs).items() if n > 1), None)
    if shared is not None:
        a, b = [num for num, d in enumerate(dirs) if d == shared][:2]
        raise ConfigError(
            f"hydra.sweep.subdir={subdir} gives the jobs #{a} [{' '.join(jobs[a])}] and #{b} [{' '.join(jobs[b])}] "
            f"one dir, {shared}; allowed: a dir of its own for every job (the default ${{hydra.job.num}}, or one "
            "made of every swept key)"
        )
    return dirs


def _found(job_cfg: DictConfig, rc: Any, job_dir: Path | None, digest: str, dense_hash: str) -> tuple[bool, ...]:
    """Whether the dense cache holds the job's dense run, the job cache the job, and its job dir
    the job done."""
    from prune_exp.app.run import config_fingerprint
    from prune_exp.store.dense_cache import DenseCache
    from prune_exp.store.job_cache import DamagedEntry, JobCache, job_key

    cache_dir = str(OmegaConf.select(job_cfg, "paths.cache_dir"))
    dense = DenseCache(cache_dir).entry(dense_hash).is_dir()
    done = job_dir is not None and _state(job_dir) == "done"
    if not rc.job_cache:
        return dense, False, done
    cache, key = JobCache(cache_dir), job_key(config_fingerprint(job_cfg), digest, dense_hash)
    try:  # a hit only if the job would take it: the entry verified as the job verifies it
        return dense, cache.entry(key).is_dir() and bool(cache.verify(key)), done
    except (DamagedEntry, OSError):
        return dense, False, done


def _state(job_dir: Path) -> str | None:
    """The state in the job dir's status.json (the preflight checked it is this job's)."""
    try:
        return json.loads((job_dir / STATUS_FILE).read_text()).get("state")
    except (OSError, ValueError):
        return None


def _outcome(job: PlannedJob) -> str:
    """What running the job would do, as the dry run lists it."""
    if job.done:
        return "done in its dir"
    if job.job_cached:
        return "job cache: hit"
    return "dense cache: hit" if job.dense_cached else "trains"


def print_dry_run(planned: list[PlannedJob], sweep_dir: str) -> None:
    """The dry run's listing: every job, where it would write, and what the caches hold."""
    jobs = f"{len(planned)} job{'s' if len(planned) != 1 else ''}"
    print(
        f"dry run: {jobs}, each composed and checked; nothing trained, and no sweep, job or cache file "
        "written (a data set the checks load is made or downloaded into paths.data_dir, as for a run)"
    )
    print(f"sweep dir: {sweep_dir}")
    for job in planned:
        where = str(job.job_dir) if job.job_dir is not None else "(hydra.sweep.subdir, when it runs)"
        cache = _outcome(job)
        print(f"#{job.num} {' '.join(job.overrides) or '(no overrides)'}  ->  {where}  [{cache}]")
    done, hits = sum(j.done for j in planned), sum(j.job_cached and not j.done for j in planned)
    dense = len({j.dense_hash for j in planned})
    cached = len({j.dense_hash for j in planned if j.dense_cached})
    print(
        f"of {jobs}: {done} done in their dirs, {hits} in the job cache; "
        f"{cached} of {dense} dense runs in the dense cache"
    )


def run_batches(config: DictConfig, batches: list[list[list[str]]], launcher: Any) -> list[Any]:
    """Hydra's basic sweeper's loop after its check: ``multirun.yaml`` saved (atomically), each
    batch handed to ``launcher``, a failed job's exception raised. A full disk ends the sweep
    with one line (run.atomic_hydra_files keeps Hydra's own job files whole)."""
    from prune_exp.errors import disk_full
    from prune_exp.store.atomic import write_text

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
    except PruneExpError as e:  # a launcher's (its settings; a SLURM submission that failed): one line
        sys.exit(f"prune-exp: error: {e}")
    except Exception as e:
        full = disk_full(e, [("hydra.sweep.dir", sweep_dir)])
        if full is None:
            raise
        sys.exit(f"prune-exp: {full}")
    return returns
