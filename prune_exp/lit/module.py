"""LightningModule: the task's loss and torchmetrics, the optimizer, an externally set LR position."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext

import lightning.pytorch as pl
import torch
from torch import nn

from prune_exp.config import LOSS, AdamConfig, OptimConfig, SGDConfig, TaskConfig
from prune_exp.lit.task import Task
from prune_exp.retrain.schedules import LRPosition
from prune_exp.store.columns import log_key
from prune_exp.store.logs import TRAIN_LOSS


def build_optimizer(cfg: OptimConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, weight decay) or Adam; the LR is then set every step."""
    if isinstance(cfg, SGDConfig):
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if isinstance(cfg, AdamConfig):
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise TypeError(f"unknown optimizer config {type(cfg).__name__}")


class EpochLoss:
    """The training loss at the last step and summed over the epoch so far, weighted by the
    batch size: a scalar for one network, ``[N]`` for N stacked arms (fused/), one tensor op a step."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None
        self.sum: torch.Tensor | None = None
        self.count = 0

    def mean(self) -> torch.Tensor:
        assert self.sum is not None and self.count, "no step this epoch"
        return self.sum / self.count

    def reset(self) -> None:
        self.last, self.sum, self.count = None, None, 0

    def add(self, losses: torch.Tensor, batch_size: int) -> None:
        losses = losses.detach().float()  # summed in float32, at any precision
        self.last = losses
        self.sum = losses * batch_size if self.sum is None else self.sum + losses * batch_size
        self.count += batch_size


# Attributes Lightning sets often that are never a Parameter, buffer or submodule.
_PLAIN_ATTRS = frozenset({"_current_fx_name"})


class PruneModule(pl.LightningModule):
    """Trains ``net`` on ``task`` (default: classification; its loss and its metrics, for
    ``num_classes`` outputs). In the dense stage the LR at every step comes from ``lr_position`` (set by
    the stage); in the rounds lit/cycle.RoundCycle sets it, as it does for any LightningModule."""

    def __init__(
        self,
        net: nn.Module,
        optim: OptimConfig,
        num_classes: int,
        *,
        task: TaskConfig | None = None,
        compile: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.optim_cfg = optim
        self.num_classes = num_classes
        self.task = Task.of(task, num_classes)
        self.lr_position: LRPosition | None = None
        self.losses = EpochLoss()
        self.val_metrics = self.task.collection().clone(prefix=log_key("val"))
        # channels_last: NHWC convolutions (faster with cuDNN under mixed precision); the masks
        # are multiplied elementwise, whatever the layout.
        self.channels_last = channels_last
        if channels_last:
            net.to(memory_format=torch.channels_last)
        # torch.compile: the net is compiled once, at its first forward, and kept for every round
        # (masks, rewinds and resets change the parameters in place, never the graph). Kept out
        # of the module tree so that state_dict keys stay the net's own.
        self._compile = compile
        self.__dict__["_compiled"] = None

    def __setattr__(self, name: str, value: object) -> None:
        # Lightning sets _current_fx_name around every hook it calls, ~50 times a step;
        # nn.Module.__setattr__ (type checks against parameters, buffers, submodules) made that
        # a measurable share of a small model's step. A plain attribute needs none of it.
        if name in _PLAIN_ATTRS:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._compile:
            if self.__dict__["_compiled"] is None:
                self.__dict__["_compiled"] = torch.compile(self.net)
            return self.__dict__["_compiled"](x)
        return self.net(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.optim_cfg, self.net.parameters())

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        if self.lr_position is None:  # the rounds: the RoundCycle has set the LR
            return
        lr = self.lr_position.lr(self.trainer.global_step)
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.task.loss(self(x), y)
        # Summed here and logged once per epoch: self.log on every step costs ~20% of a small
        # model's step time.
        self.losses.add(loss, len(y))
        return loss

    def on_train_epoch_start(self) -> None:
        self.losses.reset()

    def on_validation_epoch_end(self) -> None:
        # The epoch's train loss goes into the row of its validation, which Lightning logs before
        # the epoch's resume checkpoint: one row per epoch, all of it in that checkpoint's log
        # (logs.py). Validation runs after the epoch's last training step.
        if self.trainer.state.fn == "fit":
            self._log_train_loss()

    def on_train_epoch_end(self) -> None:
        if not self.trainer.enable_validation:  # no val split: the row is the train loss alone
            self._log_train_loss()  # (still before the checkpoint, which Lightning calls last)

    def _log_train_loss(self) -> None:
        if self.losses.count:
            # (DDP) averaged over the ranks, each of which saw its share of the epoch
            self.log(TRAIN_LOSS, self.losses.mean(), prog_bar=True, sync_dist=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        # Every rank evaluates the whole split (no sharding), so sync_dist averages equal values.
        self.log(
            log_key("val", LOSS),
            self.task.loss(logits, y),
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=True,
        )
        self.val_metrics.update(self.task.preds(logits, y), y)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=False, batch_size=len(y))

    @torch.no_grad()
    def evaluate(self, loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Loss and every metric over ``loader``, outside Lightning's loops (callbacks use it)."""
        was_training = self.net.training
        self.net.eval()
        if self.__dict__.get("_eval_metrics") is None:  # built once (~3 ms), outside the module tree
            self.__dict__["_eval_metrics"] = self.task.collection()
        metrics = self.__dict__["_eval_metrics"].to(self.device)
        metrics.reset()
        loss_sum, n = 0.0, 0
        try:
            trainer = self._trainer  # the run's precision (autocast) when a Trainer is attached
            context = trainer.precision_plugin.forward_context() if trainer is not None else nullcontext()
            for x, y in loader:
                x, y = x.to(self.device), y.to(self.device)
                with context:
                    logits = self(x).float()
                loss_sum += float(self.task.loss(logits, y, reduction="sum"))
                n += len(y)
                metrics.update(self.task.preds(logits, y), y)
        finally:
            self.net.train(was_training)
        out = {k: float(v) for k, v in metrics.compute().items()}
        out[LOSS] = loss_sum / max(n, 1)
        return out
