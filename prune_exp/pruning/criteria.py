"""Criteria: importance scores (higher = more important, kept longer)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from prune_exp.config import positive_int
from prune_exp.seeds import derive_seed

if TYPE_CHECKING:
    from prune_exp.pruning.structure import Structure

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (model output, targets) -> scalar


@dataclass(frozen=True)
class ScoreContext:
    """What a criterion may look at besides the weights."""

    model: nn.Module
    round: int  # 1-based pruning round
    seed: int
    batches: Batches | None = None  # training batches for data-driven criteria (Taylor)
    loss: Loss = F.cross_entropy  # the task's loss (Pruner's score_loss), which data-driven ones differentiate


class Criterion(ABC):
    name: str

    @abstractmethod
    def scores(self, weights: Mapping[str, torch.Tensor], ctx: ScoreContext) -> dict[str, torch.Tensor]:
        """Return a float score tensor shaped like each weight."""

    def unit_scores(
        self, weights: Mapping[str, torch.Tensor], ctx: ScoreContext, structure: Structure
    ) -> dict[str, torch.Tensor]:
        """1-D scores per unit of ``structure``: by default the sum of the unit's weight scores
        (an L1 norm for magnitude). A criterion whose unit score is not such a sum overrides it."""
        return {n: structure.unit_scores(s) for n, s in self.scores(weights, ctx).items()}


class Magnitude(Criterion):
    """|w| (Han et al.; LTH; Renda et al.)."""

    name = "magnitude"

    def scores(self, weights: Mapping[str, torch.Tensor], ctx: ScoreContext) -> dict[str, torch.Tensor]:
        return {n: w.detach().abs().float() for n, w in weights.items()}


class Random(Criterion):
    """Uniform random scores: the control that every real criterion has to beat.

    The draw depends only on (seed, round), so a rerun prunes the same weights.
    """

    name = "random"

    def scores(self, weights: Mapping[str, torch.Tensor], ctx: ScoreContext) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(derive_seed(ctx.seed, ctx.round))
        return {n: torch.rand(w.shape, generator=g).to(w.device) for n, w in weights.items()}


class Taylor(Criterion):
    """First-order Taylor importance (Molchanov et al. 2019), from ``batches`` training batches.

    With g_b the gradient of the batch-mean loss on batch b (the task's: cross-entropy, MSE) and c_b = g_b * w, a
    weight scores sum_b c_b^2 and a unit (e.g. an output filter) scores
    sum_b (sum over its weights of c_b)^2: the squared first-order change of the loss when
    the unit is removed, accumulated over the batches. The gradients are taken in training
    mode (BatchNorm uses batch statistics, as in the paper) and leave no trace: running
    statistics and ``.grad`` are restored afterwards.
    """

    name = "taylor"

    def __init__(self, batches: int = 16) -> None:
        positive_int("prune.criterion.batches", batches)
        self.batches = batches

    def scores(self, weights: Mapping[str, torch.Tensor], ctx: ScoreContext) -> dict[str, torch.Tensor]:
        return self._accumulate(weights, ctx, lambda c: c)

    def unit_scores(
        self, weights: Mapping[str, torch.Tensor], ctx: ScoreContext, structure: Structure
    ) -> dict[str, torch.Tensor]:
        return self._accumulate(weights, ctx, structure.unit_scores)

    def _accumulate(
        self,
        weights: Mapping[str, torch.Tensor],
        ctx: ScoreContext,
        per_unit: Callable[[torch.Tensor], torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        if ctx.batches is None:
            raise RuntimeError("the taylor criterion needs training batches (ScoreContext.batches)")
        model = ctx.model
        buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
        saved_grads = {n: p.grad for n, p in model.named_parameters()}
        was_training = model.training
        out: dict[str, torch.Tensor] = {}
        seen = 0
        try:
            model.train()
            device = next(model.parameters()).device
            for x, y in ctx.batches():
                if seen == self.batches:
                    break
                model.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    ctx.loss(model(x.to(device)), y.to(device)).backward()
                for n, w in weights.items():
                    u = per_unit((w.grad * w).detach().float()) ** 2
                    out[n] = out[n] + u if n in out else u
                seen += 1
        finally:
            model.train(was_training)
            with torch.no_grad():
                for k, v in model.named_buffers():
                    v.copy_(buffers[k])
            for n, p in model.named_parameters():
                p.grad = saved_grads[n]
        if seen == 0:
            raise RuntimeError("the taylor criterion got no training batches")
        return out
