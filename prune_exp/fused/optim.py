"""SGD and Adam over stacked parameters with one learning rate per arm.

torch.optim takes one scalar LR per parameter group, and an arm is a slice of every stacked
parameter, not a group; so these two re-state torch's update rules (torch.optim.SGD and Adam,
defaults otherwise: no dampening, no AMSGrad) with ``lr`` an ``[N]`` tensor that scales each
arm's slice. The optimizer state is per element, hence per arm; it is cleared at every round
start, as an unfused job's is. Subclasses of torch.optim.Optimizer: its hooks (the mask
enforcer's post-step hook), state_dict and Lightning's handling all apply."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from prune_exp.config import AdamConfig, OptimConfig, SGDConfig


def _per_arm(lr: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """``lr`` shaped to broadcast over each stacked parameter's arm dim."""
    return [lr.to(p.dtype).view(-1, *([1] * (p.dim() - 1))) for p in params]


class StackedOptimizer(torch.optim.Optimizer):
    """The shared part: one parameter group, its ``lr`` an ``[N]`` tensor set every step."""

    def __init__(self, params: Iterable[nn.Parameter], arms: int, defaults: dict) -> None:
        super().__init__(params, {"lr": torch.zeros(arms), **defaults})

    def set_lr(self, lr: torch.Tensor) -> None:
        for group in self.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params, [p.grad for p in params])
        return loss

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        raise NotImplementedError


class StackedSGD(StackedOptimizer):
    """torch.optim.SGD's rule: g += wd·p; buf = g at the first step, else buf = μ·buf + g;
    g = g + μ·buf (Nesterov) or buf; p -= lr·g, with arm i's slice scaled by lr[i]."""

    def __init__(
        self, params: Iterable[nn.Parameter], arms: int, *, momentum: float, nesterov: bool, weight_decay: float
    ) -> None:
        super().__init__(params, arms, {"momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay})

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        momentum, wd = group["momentum"], group["weight_decay"]
        if wd:
            grads = torch._foreach_add(grads, params, alpha=wd)
        if momentum:
            bufs = [self.state[p].get("momentum_buffer") for p in params]
            if any(b is None for b in bufs):  # the round's first step (the state is cleared at round start)
                bufs = [g.clone() for g in grads]
                for p, b in zip(params, bufs, strict=True):
                    self.state[p]["momentum_buffer"] = b
            else:
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads)
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        torch._foreach_sub_(params, torch._foreach_mul(grads, _per_arm(group["lr"], params)))


class StackedAdam(StackedOptimizer):
    """torch.optim.Adam's rule (Kingma & Ba with L2 weight decay added to the gradient), with
    arm i's step scaled by lr[i]; the step count is shared, the arms being in lockstep."""

    def __init__(
        self, params: Iterable[nn.Parameter], arms: int, *, betas: tuple[float, float], eps: float, weight_decay: float
    ) -> None:
        super().__init__(params, arms, {"betas": betas, "eps": eps, "weight_decay": weight_decay})

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        (beta1, beta2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
        if wd:
            grads = torch._foreach_add(grads, params, alpha=wd)
        for p in params:
            if not self.state[p]:
                self.state[p].update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        states = [self.state[p] for p in params]
        step = states[0]["step"] + 1
        for s in states:
            s["step"] = step
        exp_avg, exp_avg_sq = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        bias1, bias2_sqrt = 1 - beta1**step, (1 - beta2**step) ** 0.5
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, eps)
        step_size = torch._foreach_div(_per_arm(group["lr"], params), bias1)
        torch._foreach_sub_(params, torch._foreach_mul(torch._foreach_div(exp_avg, denom), step_size))


def build_stacked_optimizer(cfg: OptimConfig, params: Iterable[nn.Parameter], arms: int) -> StackedOptimizer:
    """The stacked counterpart of lit.module.build_optimizer, for the same config."""
    if isinstance(cfg, SGDConfig):
        return StackedSGD(params, arms, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if isinstance(cfg, AdamConfig):
        return StackedAdam(params, arms, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise TypeError(f"unknown optimizer config {type(cfg).__name__}")
