"""Each fused arm's training curves in its own logs: the epoch's mean train loss and its
validation (every arm measured at once, fused/evaluate.py) in its job's
``retrain_log/metrics.csv`` and its tracker, and the step loss to its tracker, under the names
an unfused job logs them by (lit/module.py, tracking.StepLoss)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from prune_exp.fused.evaluate import ArmsEvaluation
from prune_exp.store.columns import log_key
from prune_exp.store.logs import STEP_LOSS, TRAIN_LOSS


class ArmCurves(Callback):
    """``loggers[i]`` are arm i's: its job's CSV log first, then its tracker's, if any. Those are
    the trainer's loggers too, so they are saved before every group checkpoint (a resumed
    group's logs keep the epochs its checkpoint holds) and finalized with the fit."""

    def __init__(self, loggers: Sequence[Sequence[Logger]]) -> None:
        self.loggers = [list(arm) for arm in loggers]
        self.validation: ArmsEvaluation | None = None  # the arms' val split, measured every epoch

    def validate_with(self, validation: ArmsEvaluation) -> None:
        self.validation = validation

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.losses.reset()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        step, losses = trainer.global_step, pl_module.losses
        if step % trainer.log_every_n_steps or losses.last is None:
            return
        trackers = [(i, arm[1:]) for i, arm in enumerate(self.loggers) if len(arm) > 1]
        if trackers:
            last = losses.last.tolist()
            for i, loggers in trackers:
                for logger in loggers:
                    logger.log_metrics({STEP_LOSS: last[i]}, step=step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        losses = pl_module.losses
        if not losses.count or not self.loggers:
            return
        means = losses.mean().tolist()
        vals: list[dict[str, float]] = [{} for _ in means]
        if self.validation is not None:  # after the epoch's last step, as Lightning validates
            measured = self.validation(pl_module.device, trainer.precision_plugin.forward_context())
            vals = [{log_key("val", k): v for k, v in arm.items()} for arm in measured]
        for mean, val, loggers in zip(means, vals, self.loggers, strict=True):
            for logger in loggers:
                row = {**val, TRAIN_LOSS: mean, "epoch": trainer.current_epoch}
                logger.log_metrics(row, step=trainer.global_step - 1)
