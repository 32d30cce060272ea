"""Hydra callbacks: Preflight runs preflight.py's checks for every job of a run or sweep before
Hydra writes anything; Report summarizes a sweep when it ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from prune_exp.app.preflight import (
    check_job,
    check_launch,
    check_outputs,
    check_sweeper_direction,
    output_dir,
    preflight_errors,
)
from prune_exp.app.session import SESSION
from prune_exp.errors import ConfigError
from prune_exp.store.sweep import PRUNE_EXP_SWEEPER, sweep_job_overrides

log = logging.getLogger("prune_exp")


class Preflight(Callback):
    """Fail before any directory is created if any job's config is invalid."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with preflight_errors():
            if OmegaConf.select(config, "hydra.sweeper.dry_run"):
                raise ConfigError(
                    "hydra.sweeper.dry_run=true is a sweep's dry run; allowed: with -m (prune-exp -m ... --cfg job), "
                    "or --cfg job to print a single run's config"
                )
            run_dir = output_dir(config, "hydra.run.dir")
            checked = check_job(config)
            check_launch(config, str(OmegaConf.select(config, "hydra.launcher._target_")), multirun=False)
            check_outputs(config, run_dir, "hydra.run.dir", checked)

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        from prune_exp.app.job_configs import JobConfigs
        from prune_exp.app.sweep_preflight import check_sweep

        SESSION.dir_key, SESSION.dir = "hydra.sweep.dir", str(config.hydra.sweep.dir)
        with preflight_errors():
            check_sweeper_direction(config)
        if OmegaConf.select(config, "hydra.sweeper._target_") == PRUNE_EXP_SWEEPER:
            return  # the sweeper checks every job as it composes it, and hands them to the launcher
        loader = GlobalHydra.instance().config_loader()
        jobs = sweep_job_overrides(config, loader)
        if jobs is None:
            log.info("preflight: not a basic sweep, every job checks its own config when it starts")
            return
        check_sweep(config, jobs, JobConfigs(loader, config))


class Report(Callback):
    """When a multirun ends, print and write the strategy comparison of its sweep dir. Hydra turns
    an exception here into a warning, so a report that fails is recorded in SESSION instead: the
    command then exits with its one line (session.sweep_status)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from prune_exp.errors import PruneExpError
        from prune_exp.report import report_sweep

        sweep_dir = Path(config.hydra.sweep.dir)
        if SESSION.dry_run or not sweep_dir.exists():  # nothing was launched: nothing to report
            return
        try:
            sweep = report_sweep(sweep_dir)
        except PruneExpError as e:  # a full disk, a user's file in the report's place: one line
            SESSION.report_error = str(e)
            return
        except Exception as e:  # our bug: its traceback, and still a failed command
            log.exception("the sweep's report failed")
            SESSION.report_error = f"internal error in the report ({type(e).__name__}: {e}; traceback above)"
            return
        SESSION.unfinished, SESSION.jobs = sum(not job.done for job in sweep.jobs), len(sweep.jobs)
