"""Experiment trackers (``logger`` group): any Lightning logger, attached to the prune-retrain
stage next to the CSV log. It gets the composed config once, the train loss per step and the
val metrics per epoch (through Lightning), and every round's record under ``round/``, at step =
round, with ``round/sparsity`` and ``round/compression`` alongside: a plot of accuracy against
sparsity.

The dense run is not logged to the tracker: it is shared through the cache by every job of its
seed (its curves are in the cache entry's ``metrics.csv``); its record is, as round 0.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from prune_exp.errors import ConfigError
from prune_exp.store.columns import JOB_COLUMNS
from prune_exp.store.logs import STEP_LOSS

ROUND_PREFIX = "round/"
EXTRA = "trackers"  # the optional dependencies (pyproject) that hold the heavier clients


def check_available(target: str) -> None:
    """ConfigError, naming the extra, when the client the logger class ``target`` needs is not
    installed: Lightning's own ``_*_AVAILABLE`` requirement flags of the class's module, of
    which one must hold (TensorBoard takes tensorboard or tensorboardX)."""
    module_name, _, cls_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"logger._target_={target!r} cannot be imported ({e}); allowed: a Lightning logger") from None
    flags = {
        k: v for k, v in vars(sys.modules[cls.__module__]).items() if k.startswith("_") and k.endswith("_AVAILABLE")
    }
    if flags and not any(bool(v) for v in flags.values()):
        why = "; ".join(str(v) for v in flags.values())
        raise ConfigError(
            f"logger={cls_name} needs its client, which is not installed ({why}); "
            f"allowed: pip install 'prune_exp[{EXTRA}]' (uv sync --extra {EXTRA}), or logger=csv"
        )


def flat_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``: the hyperparameters, once per run."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def round_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The record's numeric columns that change from round to round, under ``round/`` (the
    job's own columns are in the hyperparameters)."""
    return {
        ROUND_PREFIX + k: float(v)
        for k, v in row.items()
        if k not in JOB_COLUMNS and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class StepLoss(Callback):
    """The train loss every ``trainer.log_every_n_steps`` steps, to the tracker only (the CSV log
    keeps one row per epoch, which its resume relies on; the module logs the epoch's mean)."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *_: Any) -> None:
        step = trainer.global_step
        if step % trainer.log_every_n_steps == 0 and outputs is not None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.logger.log_metrics({STEP_LOSS: float(loss)}, step=step)


class Tracker:
    """One job's tracker run: a Lightning logger and what the job sends it besides Lightning."""

    def __init__(self, logger: Any, hparams: dict[str, Any]) -> None:
        self.logger = logger
        self.hparams = hparams
        self.callbacks = [StepLoss(logger)]
        self.started = False

    @classmethod
    def of(cls, node: Any, hparams: dict[str, Any]) -> Tracker:
        """The logger config ``node`` (a ``_target_``), built. MLflow keeps its file store (our
        default, under outputs/) in maintenance mode and refuses it unless told; we tell it."""
        from hydra.utils import instantiate

        if str(node.get("tracking_uri", "")).startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return cls(instantiate(node), hparams)

    def start(self) -> None:
        self.started = True
        self.logger.log_hyperparams(self.hparams)
        if type(self.logger).__name__ == "WandbLogger":  # W&B: the round metrics against sparsity
            self.logger.experiment.define_metric(f"{ROUND_PREFIX}*", step_metric=f"{ROUND_PREFIX}sparsity")

    def record(self, row: dict[str, Any]) -> None:
        self.logger.log_metrics(round_metrics(row), step=int(row["round"]))

    def close(self, status: str) -> None:
        """End the run (``success``, ``failed``): flushed, and closed where the client keeps it
        open per process (W&B), so the next job of a sweep in this process is its own run."""
        if not self.started:
            return
        self.logger.finalize(status)
        if type(self.logger).__name__ == "WandbLogger":
            self.logger.experiment.finish(exit_code=0 if status == "success" else 1)
