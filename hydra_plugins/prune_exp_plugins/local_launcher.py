"""``hydra/launcher=local``: Hydra's joblib launcher, handing each worker its job's composed config.

Hydra's joblib launcher sends a worker a job's overrides, and the worker composes the job again
(~0.1 s) although the sweeper composed and checked it already. Here the worker gets the config
itself (job_configs.py: composed once, by the sweep's own process, as a worker would), and runs
it exactly as Hydra's ``execute_job`` does. Everything else (joblib's settings, loky, the
logging) is Hydra's joblib launcher's.

Hydra imports every plugin module when it starts, so this one stays light.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def execute_composed(
    idx: int,
    sweep_config: DictConfig,
    hydra_context: HydraContext,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
) -> JobReturn:
    """In a worker: the job, as Hydra's joblib ``execute_job`` runs it once it has composed it."""
    from prune_exp.app.run import atomic_hydra_files

    atomic_hydra_files()
    setup_globals()
    Singleton.set_state(singleton_state)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class LocalJoblibLauncher(JoblibLauncher):
    def check(self) -> None:
        """ConfigError for an ``n_jobs`` joblib cannot run (the sweeper asks before any job)."""
        import os

        from prune_exp.errors import ConfigError

        n = self.joblib.get("n_jobs")
        cores = os.cpu_count() or 1
        if not (n is None or (isinstance(n, int) and (n >= 1 or (n < 0 and cores + 1 + n >= 1)))):
            raise ConfigError(
                f"hydra.launcher.n_jobs={n} is not allowed; allowed: the workers at once, an integer >= 1, or "
                f"-1 .. -{cores} (cores + 1 + n_jobs: -1 is one per core; this machine has {cores})"
            )

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra's joblib launch, each job's config composed here (lazily, as joblib dispatches)."""
        from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
        from joblib import Parallel, delayed

        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        joblib_cfg = self.joblib
        joblib_cfg["backend"] = "loky"  # as Hydra's: the threading backend does not work with Hydra
        process_joblib_cfg(joblib_cfg)
        settings = ",".join(f"{k}={v}" for k, v in joblib_cfg.items())
        log.info(f"Joblib.Parallel({settings}) is launching {len(job_overrides)} jobs")
        log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
        for idx, overrides in enumerate(job_overrides):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        state, loader = Singleton.get_state(), self.hydra_context.config_loader
        runs = Parallel(**joblib_cfg)(
            delayed(execute_composed)(
                idx,
                loader.load_sweep_config(self.config, list(overrides)),
                self.hydra_context,
                self.task_function,
                state,
            )
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx)
        )
        assert isinstance(runs, list) and all(isinstance(r, JobReturn) for r in runs)
        return runs
