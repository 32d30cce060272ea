"""The jobs of a sweep: every job's overrides, as Hydra's basic sweeper (and prune_exp's, which
expands a sweep as it does) will launch them.

Used before the sweep starts (the preflight checks every job) and after it (the report lists
the jobs that are missing); Hydra and OmegaConf only, so the report stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
PRUNE_EXP_SWEEPER = "hydra_plugins.prune_exp_plugins.sweeper.PruneExpSweeper"  # hydra/sweeper=prune_exp


def sweep_job_overrides(config: DictConfig, config_loader: Any = None) -> list[list[str]] | None:
    """Every job's overrides, as the sweeper will launch them; None for other sweepers, and for a
    ``glob()`` of group options without ``config_loader`` (which knows the options)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    if OmegaConf.select(config, "hydra.sweeper._target_") not in (BASIC_SWEEPER, PRUNE_EXP_SWEEPER):
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    globs = [o for o in OverridesParser.create().parse_overrides(args) if o.value_type == ValueType.GLOB_CHOICE_SWEEP]
    if globs and config_loader is None:
        return None
    return [job for batch in expand(args, None, config_loader) for job in batch]


def expand(args: Sequence[str], max_batch_size: int | None, config_loader: Any = None) -> list[list[list[str]]]:
    """The sweep's ``args`` (Hydra's override grammar: ``a=1,2``, ``range``, ``choice``, ``glob``)
    as batches of jobs' overrides, exactly as Hydra's basic sweeper makes them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(list(args))
    return BasicSweeper.split_arguments(parsed, max_batch_size)
