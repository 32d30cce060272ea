"""The fused group's LightningModule: N arms' steps as one."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.func import vmap

from prune_exp.config import OptimConfig
from prune_exp.fused.batches import FusedBatches
from prune_exp.fused.optim import StackedOptimizer, build_stacked_optimizer
from prune_exp.fused.stack import StackedNets
from prune_exp.lit.module import EpochLoss
from prune_exp.lit.task import Task


class FusedModule(pl.LightningModule):
    """Trains the stacked arms: each arm's loss on its own batch (the task's loss, vmapped), and
    their sum as the loss to differentiate, so arm i's gradient is its own loss's. The
    optimizer steps every arm with its own LR (fused.optim); FusedCycle sets them. Each arm's
    loss is kept in ``losses`` for its curves (fused.curves)."""

    def __init__(self, stacked: StackedNets, optim: OptimConfig, task: Task, batches: FusedBatches) -> None:
        super().__init__()
        self.stacked = stacked
        self.optim_cfg, self.task, self.batches = optim, task, batches
        self._arm_loss = vmap(task.loss)
        self.losses = EpochLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stacked(x)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["arm_rng"] = self.stacked.rng.state_dict()  # each arm's random stream

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "arm_rng" in checkpoint:  # (a group checkpoint from before 2026-12 has none)
            self.stacked.rng.load_state_dict(checkpoint["arm_rng"])

    def configure_optimizers(self) -> StackedOptimizer:
        return build_stacked_optimizer(self.optim_cfg, self.stacked.holder.parameters(), self.stacked.arms)

    def train_dataloader(self) -> FusedBatches:
        return self.batches

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        x, y = batch
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        losses = self._arm_loss(self(x), y)
        self.losses.add(losses, y.shape[1])
        return losses.sum()

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """trainer.gradient_clip_val per arm, as each unfused job clips its own gradients: by
        value, elementwise; by norm (Lightning's default), each arm's norm over all its parameters."""
        if not gradient_clip_val:
            return
        grads = [p.grad for p in self.stacked.holder.parameters() if p.grad is not None]
        if gradient_clip_algorithm == "value":
            torch._foreach_clamp_min_(grads, -gradient_clip_val)
            torch._foreach_clamp_max_(grads, gradient_clip_val)
            return
        norms = torch.stack([g.flatten(1).float().pow(2).sum(1) for g in grads]).sum(0).sqrt()  # [N]
        coef = (gradient_clip_val / (norms + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, [coef.to(g.dtype).view(-1, *([1] * (g.dim() - 1))) for g in grads])
