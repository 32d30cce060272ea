"""MaskEnforcer keeps pruned weights at zero (torch hooks); RoundResult is what a round measured;
RewindPointSaver (a callback) keeps the dense run's weights at the epochs rewinding can need.
The rounds themselves: lit/rounds.py (one arm's) and lit/cycle.py (the callback that runs them)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from prune_exp.pruning.mask import Mask

log = logging.getLogger(__name__)


class MaskEnforcer:
    """A pruned weight stays exactly 0: its gradient is zeroed as it is accumulated, the weight
    is re-masked right after every optimizer step, and optimizer state at pruned positions is
    cleared whenever the mask changes.

    Both through torch's own hooks, not a Lightning callback (Lightning dispatches every hook of
    every step to every callback): each masked parameter's post-accumulate-grad hook, so the
    gradient is masked before gradient clipping and any optimizer sees it, in any loop; and the
    optimizer's post-step hook. (An optimizer *pre*-step hook cannot mask the gradients under
    Lightning: its closure, the forward and backward, runs inside ``optimizer.step``.)
    :meth:`attach` binds the optimizers; lit/cycle.RoundCycle does it when the fit starts."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.mask: Mask | None = None
        self._params: list[torch.Tensor] = []
        self._factors: list[torch.Tensor] = []
        self._grad_hooks: list[Any] = []
        self._step_hooks: list[Any] = []
        self._optimizers: list[torch.optim.Optimizer] = []

    def set_mask(self, mask: Mask) -> None:
        """Adopt ``mask``: zero the pruned weights now and the optimizer state at them."""
        params = dict(self.net.named_parameters())
        mask.check_against(params)
        self.mask = mask
        self._bind()
        with torch.no_grad():
            if self._params:
                torch._foreach_mul_(self._params, self._factors)
            for opt in self._optimizers:
                for p, f in zip(self._params, self._factors, strict=True):
                    for v in opt.state.get(p, {}).values():
                        if isinstance(v, torch.Tensor) and v.shape == p.shape:
                            v.mul_(f)

    def attach(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Re-mask the weights after every step of these optimizers, and clear their state at
        pruned positions when the mask changes (until :meth:`detach`)."""
        self.detach()
        self._bind()  # the precision plugin may have moved or cast the parameters; the grad hooks again
        self._optimizers = list(optimizers)
        self._step_hooks = [opt.register_step_post_hook(self._mask_weights) for opt in self._optimizers]

    def detach(self) -> None:
        """Remove every hook: the network trains unmasked again (until the next set_mask)."""
        for h in [*self._step_hooks, *self._grad_hooks]:
            h.remove()
        self._step_hooks, self._grad_hooks, self._optimizers = [], [], []

    def _bind(self) -> None:
        """Cache (param, 0/1 factor) pairs in the params' current dtype and device, and hook
        each masked parameter's gradient."""
        if self.mask is None:
            return
        for h in self._grad_hooks:
            h.remove()
        params = dict(self.net.named_parameters())
        pairs = [(params[n], m) for n, m in self.mask.items() if not bool(m.all())]
        self._params = [p for p, _ in pairs]
        self._factors = [m.to(device=p.device, dtype=p.dtype) for p, m in pairs]
        self._grad_hooks = [
            p.register_post_accumulate_grad_hook(functools.partial(_mask_grad, factor=f))
            for p, f in zip(self._params, self._factors, strict=True)
        ]

    def _mask_weights(self, *_: Any) -> None:
        if self._params:
            with torch.no_grad():
                torch._foreach_mul_(self._params, self._factors)


def _mask_grad(param: torch.Tensor, factor: torch.Tensor) -> None:
    if param.grad is not None:
        param.grad.mul_(factor)


@dataclass
class RoundResult:
    """Everything measured in one round, before it becomes a record row."""

    round: int
    target_sparsity: float
    mask: Mask
    mask_digest: str  # dist.tensors_digest of the mask: equal digests, equal masks
    pruned: dict[str, float]  # metrics right after pruning ("val/acc", "test/loss", ...)
    retrained: dict[str, float]  # metrics after the round's retraining
    epochs: float  # whole for the rounds of a strategy; a gradual row's: steps / steps per epoch
    steps: int
    seconds: float
    diagnostics: dict[str, Any] = field(default_factory=dict)  # what the pruning did, the LR (columns.py)


class RewindPointSaver(Callback):
    """Hands the weights (and buffers) at the start of dense epoch e to ``save(e, state)`` for
    every e in ``epochs``: e = 0 is the initialization, e = T the final weights."""

    def __init__(self, net: nn.Module, epochs: set[int], save: Callable[[int, dict[str, torch.Tensor]], None]) -> None:
        self.net, self.epochs, self.save = net, epochs, save

    def _maybe_save(self, epoch: int) -> None:
        if epoch in self.epochs:
            self.save(epoch, {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()})

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._maybe_save(trainer.current_epoch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._maybe_save(trainer.current_epoch + 1)
