"""Hydra callbacks: Preflight runs preflight.py's checks for every job of a run or sweep before
Hydra writes anything; Report summarizes a sweep when it ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from prune_exp.preflight import (
    check_job,
    check_launch,
    check_outputs,
    check_selection,
    output_dir,
    preflight_errors,
    where_in_sweep,
)
from prune_exp.session import SESSION
from prune_exp.sweep import sweep_job_overrides

log = logging.getLogger("prune_exp")


class Preflight(Callback):
    """Fail before any directory is created if any job's config is invalid."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with preflight_errors():
            run_dir = output_dir(config, "hydra.run.dir")
            checked = check_job(config)
            check_launch(config, str(OmegaConf.select(config, "hydra.launcher._target_")), multirun=False)
            check_outputs(config, run_dir, "hydra.run.dir", checked)

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        from prune_exp.job_configs import JobConfigs

        SESSION.dir_key, SESSION.dir = "hydra.sweep.dir", str(config.hydra.sweep.dir)
        jobs = sweep_job_overrides(config)
        if jobs is None:
            log.info("preflight: not a basic sweep, every job checks its own config when it starts")
            return
        seen: dict[str, Any] = {}
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_"))
        with preflight_errors():
            sweep_dir = output_dir(config, "hydra.sweep.dir")
        numbered = OmegaConf.to_container(config.hydra.sweep)["subdir"] == "${hydra.job.num}"
        composer, configs = JobConfigs(config_name), []
        for overrides in jobs:  # every job's values first: a bad one fails before any data is made
            with preflight_errors(where_in_sweep(overrides)):
                job_cfg, rc = composer.of(overrides)
                check_launch(job_cfg, launcher, multirun=True)
                configs.append((job_cfg, rc))
        with preflight_errors():
            check_selection([c for c, _ in configs])
        for num, (overrides, (job_cfg, rc)) in enumerate(zip(jobs, configs, strict=True)):
            with preflight_errors(where_in_sweep(overrides)):
                checked = check_job(job_cfg, seen, rc)
                check_outputs(job_cfg, sweep_dir / str(num) if numbered else None, "hydra.sweep.dir", checked, seen)


class Report(Callback):
    """When a multirun ends, print and write the strategy comparison of its sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from prune_exp.report import report_sweep

        sweep = report_sweep(Path(config.hydra.sweep.dir))
        SESSION.unfinished, SESSION.jobs = sum(not job.done for job in sweep.jobs), len(sweep.jobs)
