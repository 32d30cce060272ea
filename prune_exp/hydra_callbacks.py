"""Hydra callbacks: Preflight checks every job of a run or sweep before Hydra writes anything;
Report summarizes a sweep when it ends."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from prune_exp.config import ConfigError

log = logging.getLogger("prune_exp")

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def check_job(cfg: DictConfig, _seen: dict[str, None] | None = None) -> None:
    """Raise ConfigError if this job's config would fail: types and ranges, then the parts that
    need the model (name patterns, metrics that need enough classes). Builds no data."""
    from hydra.utils import instantiate

    from prune_exp.pruning.pruner import Pruner
    from prune_exp.run import to_run_config

    rc = to_run_config(cfg, resolve_paths=False)
    parts = [OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "model", "prune", "structure")]
    model_key = json.dumps(parts, sort_keys=True, default=str)
    if _seen is not None and model_key in _seen:
        return
    dm = instantiate(cfg.data)
    if rc.select_metric == "acc_top5" and dm.num_classes <= 5:
        raise ConfigError(
            f"select_metric='acc_top5' needs more than 5 classes, the data has {dm.num_classes}; allowed: acc, f1_macro"
        )
    net = instantiate(cfg.model, input_shape=dm.input_shape, num_classes=dm.num_classes)
    Pruner(
        net,
        criterion=instantiate(cfg.prune.criterion),
        structure=instantiate(cfg.structure),
        scope=rc.prune.scope,
        sparsities=[rc.prune.sparsity],
        include=rc.prune.include,
        exclude=rc.prune.exclude,
        layer_rate_scale=rc.prune.layer_rate_scale,
    )
    if _seen is not None:
        _seen[model_key] = None


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


# Errors that mean "bad input": ours, OmegaConf's (wrong type, unknown key) and Hydra's
# (an option that does not exist). Each names the key.
INPUT_ERRORS = (ConfigError, OmegaConfBaseException, HydraException)


def _exit_with(e: Exception, where: str = "") -> None:
    # One clear message, no traceback: it is the user's input, not our bug. (Hydra turns an
    # exception raised in a callback into a warning, so exiting is the way to stop the run.)
    sys.exit(f"prune-exp: config error{where}: {e}")


class Preflight(Callback):
    """Fail before any directory is created if any job's config is invalid."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_job(config)
        except INPUT_ERRORS as e:
            _exit_with(e)

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        from hydra import compose

        jobs = sweep_job_overrides(config)
        if jobs is None:
            log.info("preflight: not a basic sweep, every job checks its own config when it starts")
            return
        seen: dict[str, None] = {}
        for overrides in jobs:
            try:
                check_job(compose(config_name=config_name, overrides=overrides), seen)
            except INPUT_ERRORS as e:
                _exit_with(e, f" in the sweep job [{' '.join(overrides)}]")


class Report(Callback):
    """When a multirun ends, print and write the strategy comparison of its sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from prune_exp.report import report_sweep

        report_sweep(Path(config.hydra.sweep.dir))
