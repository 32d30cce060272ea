"""The jobs of a sweep: every job's overrides, as Hydra's basic sweeper will launch them.

Used before the sweep starts (the preflight checks every job) and after it (the report lists
the jobs that are missing); Hydra and OmegaConf only, so the report stays light.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_job_overrides(config: DictConfig) -> list[list[str]] | None:
    """Every job's overrides, as the basic sweeper will launch them; None for other sweepers."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if OmegaConf.select(config, "hydra.sweeper._target_") != BASIC_SWEEPER:
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
    return [job for batch in batches for job in batch]
