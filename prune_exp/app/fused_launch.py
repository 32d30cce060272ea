"""The fused launcher's work (hydra/launcher=fused): compose every job of the sweep, group the
jobs that can train in lockstep, run each group in this process (fused.group), and each job
that fuses with no other one after another, as Hydra's basic launcher does, saying why.

A group's jobs share everything but what an arm may have of its own: its seed, strategy,
pruning (criterion, structure, scope, sparsity targets, so its masks) and LR (its value and
schedule); and the same number of rounds of the same length. Where the group runs,
job/train.lockstep_group has them train one after another if stacking would be slower there.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from prune_exp.config import RunConfig, world_size
from prune_exp.errors import PruneExpError
from prune_exp.interrupt import signals_interrupt
from prune_exp.pruning.pruner import sparsity_schedule
from prune_exp.store.files import FUSED_DIR

log = logging.getLogger(__name__)

# What an arm may have of its own; everything else of the job config is its group's.
ARM_KEYS = ("seed", "retrain", "prune", "structure", "optim.lr", "optim.schedule", "logger", "paths.output_dir")


def fusion_key(cfg: DictConfig, rc: RunConfig) -> tuple[str | None, str]:
    """The key the jobs of one group share and, for a job that cannot fuse, None and why.
    ``cfg``: the job's config (its hydra node, if any, is left out); ``rc``: its RunConfig."""
    if rc.retrain.duration == "none":
        return None, f"retrain={rc.retrain.strategy} does not train"
    if rc.prune.schedule == "gradual":
        return None, "prune.schedule=gradual prunes inside the rounds"
    if world_size(rc.trainer) > 1:
        return None, "trainer.strategy=ddp trains the job over several processes"
    for key in ("compile", "channels_last"):  # the stacked forward has neither yet
        if getattr(rc.trainer, key):
            return None, f"trainer.{key}=true is not supported by fused arms yet"
    # unresolved: paths.output_dir is Hydra's, which a job gets only when it runs
    shared = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(shared, dict)
    shared.pop("hydra", None)
    for key in ARM_KEYS:
        *parents, leaf = key.split(".")
        node = shared
        for part in parents:
            node = node.get(part) or {}
        node.pop(leaf, None)
    rounds = len(sparsity_schedule(rc.prune.sparsity, rc.prune.schedule, rc.prune.rate))
    length = {"duration": rc.retrain.duration, "budget": rc.retrain.budget}  # finetune_lr: an arm's own LR
    tree = {"job": shared, "rounds": rounds, "retrain": length}
    return json.dumps(tree, sort_keys=True, default=str), ""


def plan_groups(keys: Sequence[tuple[str | None, str]], max_arms: int) -> list[tuple[list[int], str]]:
    """The sweep's jobs (by index) in groups of at most ``max_arms``, by their fusion_key, in the
    order of their first job; a group of one comes with the reason it trains alone."""
    by_key: dict[str, list[int]] = {}
    groups: list[tuple[list[int], str]] = []
    for i, (key, reason) in enumerate(keys):
        if key is None:
            groups.append(([i], reason))
        elif key in by_key and len(by_key[key]) < max_arms:
            by_key[key].append(i)
        else:
            by_key[key] = [i]
            groups.append((by_key[key], ""))
    alone = "no other job of the sweep shares its data, model, optimizer, trainer and rounds"
    return sorted(((g, r or (alone if len(g) == 1 else "")) for g, r in groups), key=lambda gr: gr[0][0])


def _checked(launcher: Any, overrides: Sequence[str]) -> tuple[DictConfig, RunConfig]:
    """The job's config and RunConfig: the preflight's composition (hydra/sweeper=prune_exp),
    else Hydra's."""
    from prune_exp.app.job_configs import ComposedLoader
    from prune_exp.app.run import to_run_config

    loader = launcher.hydra_context.config_loader
    if isinstance(loader, ComposedLoader):
        return loader.jobs.checked(overrides)
    cfg = loader.load_sweep_config(launcher.config, list(overrides))
    app = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return app, to_run_config(app, resolve_paths=False, overrides=list(cfg.hydra.overrides.task))


def _compose(launcher: Any, overrides: Sequence[str], idx: int, job_id: Any) -> DictConfig:
    """The job's config, as Hydra's launchers compose it (load_sweep_config), numbered."""
    cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id, cfg.hydra.job.num = job_id, idx
    return cfg


def see_job(launcher: Any, overrides: Sequence[str], cfg: DictConfig, rc: RunConfig) -> None:
    """The preflight's view of a job (hydra/sweeper=prune_exp shows the launcher each job as it
    checks it): its fusion_key and RunConfig, kept so that neither is made again."""
    launcher.__dict__.setdefault("seen", {})[tuple(overrides)] = (fusion_key(cfg, rc), rc)


def _seen(launcher: Any, overrides: Sequence[str]) -> tuple[tuple[str | None, str], RunConfig | None]:
    """The job's fusion_key and RunConfig: from the preflight (see_job), else made now."""
    seen = getattr(launcher, "seen", {}).get(tuple(overrides))
    if seen is None:
        cfg, rc = _checked(launcher, overrides)
        return fusion_key(cfg, rc), None
    return seen


def _plan(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[list[int]]:
    """The sweep's groups (plan_groups), each logged with its jobs, or why it trains alone."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    groups = plan_groups([_seen(launcher, o)[0] for o in job_overrides], launcher.max_arms)
    for members, reason in groups:
        for i in members:
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(job_overrides[i])))
        if reason:
            log.info("job #%d trains alone: %s", initial_job_idx + members[0], reason)
    return [members for members, _ in groups]


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """What Hydra's Launcher.launch returns: a JobReturn per job, in the order of the overrides.
    Each group's configs are made when it starts (a big sweep's first group starts at once)."""
    groups = _plan(launcher, job_overrides, initial_job_idx)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    returns: list[JobReturn | None] = [None] * len(job_overrides)
    for members in groups:
        jobs = [
            (job_overrides[i], _compose(launcher, job_overrides[i], n, n))
            for i, n in _numbered(members, initial_job_idx)
        ]
        for i, ret in zip(members, _run_members(launcher, jobs, sweep_dir), strict=True):
            returns[i] = ret
    return [r for r in returns if r is not None]


def submit(
    launcher: Any,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    submit_array: Callable[[Sequence[Sequence[str]], int], Sequence[Any]],
) -> list[JobReturn]:
    """hydra/launcher=fused_slurm: one array task per group. ``submit_array`` is submitit's
    launch, given one entry per group; each task (:func:`run_task`) finds its group's jobs in
    the launcher it unpickles, and returns their JobReturns."""
    groups = _plan(launcher, job_overrides, initial_job_idx)
    launcher.groups = [[(initial_job_idx + i, list(job_overrides[i])) for i in members] for members in groups]
    results = submit_array([job_overrides[members[0]] for members in groups], 0)
    returns: list[JobReturn | None] = [None] * len(job_overrides)
    for members, rets in zip(groups, results, strict=True):
        for i, ret in zip(members, rets, strict=True):
            returns[i] = ret
    return [r for r in returns if r is not None]


def run_task(
    launcher: Any, sweep_overrides: list[str], job_dir_key: str, task: int, job_id: str, singleton_state: dict
) -> list[JobReturn]:
    """One array task of hydra/launcher=fused_slurm, on its node: group ``task``'s jobs."""
    import submitit
    from hydra.core.singleton import Singleton

    Singleton.set_state(singleton_state)
    setup_globals()
    job_id = submitit.JobEnvironment().job_id
    jobs = [(overrides, _compose(launcher, overrides, idx, job_id)) for idx, overrides in launcher.groups[task]]
    return _run_members(launcher, jobs, Path(str(launcher.config.hydra.sweep.dir)))


def _numbered(members: list[int], initial_job_idx: int) -> list[tuple[int, int]]:
    return [(i, initial_job_idx + i) for i in members]


def _run_members(launcher: Any, jobs: list[tuple[Sequence[str], DictConfig]], sweep_dir: Path) -> list[JobReturn]:
    """A group's jobs (overrides, config) trained together, or a job alone as Hydra's basic
    launcher runs it."""
    if len(jobs) == 1:
        return [_run_job(launcher, jobs[0][1], launcher.task_function)]
    return _run_group(launcher, jobs, sweep_dir)


def _run_job(launcher: Any, cfg: DictConfig, task_function: Any) -> JobReturn:
    """Hydra's run_job for one job of the sweep (its dir, config files, HydraConfig, log)."""
    return run_job(
        hydra_context=launcher.hydra_context,
        task_function=task_function,
        config=cfg,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def _build(cfg: DictConfig, rc: RunConfig | None = None) -> Any:
    """The job's Experiment (run.experiment_of; ``rc``: its RunConfig from the preflight), or None
    when its config fails to build: the error logged, as the unfused job's task function does."""
    from prune_exp.app.run import experiment_of

    try:
        return experiment_of(cfg, rc)
    except PruneExpError as e:
        log.error("%s", e)
    except Exception:
        log.exception("the job failed")
    return None


def _run_group(launcher: Any, jobs: list[tuple[Sequence[str], DictConfig]], sweep_dir: Path) -> list[JobReturn]:
    """Each job's dir, config files and objects as Hydra's run_job makes them, then the jobs
    trained together. As with run.main, a job that fails returns NaN to Hydra (its status.json
    and the sweep's exit status say it failed), and an interrupt ends the sweep."""
    from prune_exp.job.spine import run_jobs
    from prune_exp.job.train import group_id

    built = [_run_job(launcher, cfg, functools.partial(_build, rc=_seen(launcher, o)[1])) for o, cfg in jobs]
    ready = [r for r in built if r.status == JobStatus.COMPLETED and r.return_value is not None]
    for r in built:
        if r not in ready:
            r.return_value = math.nan
    experiments = [r.return_value for r in ready]
    if not experiments:
        return built
    handlers = _arm_logs(ready)
    try:
        with signals_interrupt():
            values = run_jobs(experiments, group_dir=sweep_dir / FUSED_DIR / group_id(experiments))
    except PruneExpError as e:  # the user's input or files: one line (each status.json has it)
        log.error("%s", e)
        values = [math.nan] * len(ready)
    except Exception:
        log.exception("the fused group failed")
        values = [math.nan] * len(ready)
    finally:
        for h in handlers:
            logging.getLogger().removeHandler(h)
            h.close()
    for r, value in zip(ready, values, strict=True):
        r.return_value = value
    return built


def _arm_logs(returns: list[JobReturn]) -> list[logging.Handler]:
    """The group's log lines go into every arm's job log too (Hydra's ``<job name>.log``)."""
    handlers: list[logging.Handler] = []
    root = logging.getLogger()
    open_already = {Path(h.baseFilename) for h in root.handlers if isinstance(h, logging.FileHandler)}
    for r in returns:
        path = Path(r.hydra_cfg.hydra.runtime.output_dir) / f"{r.hydra_cfg.hydra.job.name}.log"
        if path.resolve() in {p.resolve() for p in open_already}:  # the last arm's, set up by run_job
            continue
        h = logging.FileHandler(path, mode="a")
        h.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        root.addHandler(h)
        handlers.append(h)
    return handlers
