"""MaskEnforcer keeps pruned weights at zero (torch hooks); the callbacks: PruneRetrainCycle runs
the rounds, RewindPointSaver keeps the dense run's weights at the epochs rewinding can need.

PruneRetrainCycle saves its state (round, mask, the round's start) in the stage's resume
checkpoint, so a killed stage resumes mid-round with the same mask and LR position."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from prune_exp import dist
from prune_exp.checkpoint import Stopwatch
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.retrain.schedules import LRPosition, LRSchedule
from prune_exp.retrain.strategies import RoundPlan

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
    :meth:`attach` binds the optimizers; PruneRetrainCycle does it when the fit starts."""

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
    extra: dict[str, Any] = field(default_factory=dict)


Evaluate = Callable[[], dict[str, float]]


class PruneRetrainCycle(Callback):
    """Runs the rounds inside one ``Trainer.fit`` of ``rounds x plan.epochs`` epochs.

    At the first epoch of a round: prune (new mask), measure, put the weights where the
    strategy says (current, rewound, or fresh init, times the mask), reset the optimizer state,
    and set the LR position; before every step, set every optimizer's LR from it. At the last
    epoch of a round: measure and report the round. With ``plan.epochs == 0`` (strategy none)
    call :meth:`run_without_training` instead. It needs nothing of the LightningModule but
    its optimizers: any module whose ``net`` is pruned works (the README's library example).
    """

    def __init__(
        self,
        *,
        net: nn.Module,
        pruner: Pruner,
        plan: RoundPlan,
        enforcer: MaskEnforcer,
        evaluate: Evaluate,
        round_start_weights: Callable[[int], Mapping[str, torch.Tensor] | None],
        lr: LRSchedule | float,
        steps_per_epoch: int,
        on_round_end: Callable[[RoundResult], None],
    ) -> None:
        self.net = net
        self.pruner, self.plan, self.enforcer = pruner, plan, enforcer
        self.evaluate = evaluate
        self.round_start_weights = round_start_weights
        self.lr, self.steps_per_epoch = lr, steps_per_epoch
        self.on_round_end = on_round_end
        self.mask = pruner.initial_mask()
        self.mask_digest = ""
        self.round = 0
        self.results: list[RoundResult] = []
        self.lr_position: LRPosition | None = None  # where the round is in the LR schedule
        self._pruned: dict[str, float] = {}
        self._start_step = 0
        self._clock = Stopwatch()

    # ---- the round, independent of Lightning
    def begin_round(self, global_step: int, optimizers: list[torch.optim.Optimizer]) -> None:
        self.round += 1
        self._clock, self._start_step = Stopwatch(), global_step
        self.mask = self.pruner.prune(self.mask, self.round)
        self.mask_digest = dist.tensors_digest(dict(self.mask))
        log.info("round %d: mask sha256 %s (rank %d)", self.round, self.mask_digest, dist.global_rank())
        dist.check_same_on_every_rank(f"the mask of round {self.round}", self.mask_digest)
        self.enforcer.set_mask(self.mask)
        self._pruned = self.evaluate()
        state = self.round_start_weights(self.round)
        if state is not None:
            self.net.load_state_dict(state)
            self.enforcer.set_mask(self.mask)
        for opt in optimizers:  # optimizer state is never carried across rounds
            opt.state.clear()
        self._set_lr_position()

    def _set_lr_position(self) -> None:
        self.lr_position = LRPosition(self.lr, self.plan.lr_start_step, self._start_step, self.steps_per_epoch)

    def finish_round(self, global_step: int, epochs: int) -> RoundResult:
        result = RoundResult(
            round=self.round,
            target_sparsity=self.pruner.sparsities[self.round - 1],
            mask=self.mask,
            mask_digest=self.mask_digest,
            pruned=self._pruned,
            retrained=self.evaluate(),
            epochs=epochs,
            steps=global_step - self._start_step,
            seconds=self._clock.seconds,
        )
        self.results.append(result)
        self.on_round_end(result)
        return result

    def run_without_training(self) -> list[RoundResult]:
        """Strategy none: prune and measure every round, no retraining."""
        while self.round < self.pruner.rounds:
            self.begin_round(0, [])
            self.finish_round(0, 0)
        return self.results

    # ---- resume (Lightning puts this state into the stage's checkpoint)
    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "mask": dict(self.mask),
            "pruned": dict(self._pruned),
            "start_step": self._start_step,
            "clock": self._clock.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.round, self._pruned, self._start_step = state_dict["round"], state_dict["pruned"], state_dict["start_step"]
        self._clock.load_state_dict(state_dict["clock"])
        self.mask = Mask(state_dict["mask"])
        self.mask_digest = dist.tensors_digest(state_dict["mask"]) if self.round else ""
        self.enforcer.set_mask(self.mask)
        if self.round:
            self._set_lr_position()

    # ---- Lightning hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.enforcer.attach(list(trainer.optimizers))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.enforcer.detach()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch % self.plan.epochs == 0:
            self.begin_round(trainer.global_step, list(trainer.optimizers))

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Every optimizer's LR for this step: the strategy's, whatever the LightningModule."""
        assert self.lr_position is not None, "a round starts before its first batch"
        lr = self.lr_position.lr(trainer.global_step)
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.plan.epochs == 0:
            self.finish_round(trainer.global_step, self.plan.epochs)


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
