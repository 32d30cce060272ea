"""What one pruning step did to a network's weights (the records' diagnostics, an LR rule's facts),
and how far the weights' signs have moved from a reference (Gadhikar & Burkholz, ICLR 2024)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from prune_exp.pruning.mask import Mask


@dataclass(frozen=True)
class PruningEffect:
    """A step from mask ``before`` to mask ``after`` on weights W (W_p = W times ``after``)."""

    sparsity_before: float  # of the prunable weights
    sparsity_after: float
    prune_fraction: float  # of the prunable weights left before the step, the fraction it pruned
    norm_drop: float  # ||W - W_p|| / ||W|| over the prunable weights
    norm_drop_all: float  # ... over every parameter
    norm_before: float = 0.0  # ||W|| over the prunable weights
    norm_after: float = 0.0  # ||W_p|| over the prunable weights

    def columns(self) -> dict[str, float]:
        return {"prune_fraction": self.prune_fraction, "norm_drop": self.norm_drop, "norm_drop_all": self.norm_drop_all}


@torch.no_grad()
def pruning_effect(net: nn.Module, before: Mask, after: Mask, prunable: Sequence[str]) -> PruningEffect:
    """The effect of going from ``before`` to ``after`` on ``net``'s current weights (call it
    before ``after`` is applied)."""
    params = dict(net.named_parameters())
    # (the masks may sit apart from the weights: the first mask is made before the net moves to its device)
    removed = {
        name: (before[name].to(p.device) & ~after[name].to(p.device)) for name, p in params.items() if name in after
    }
    dropped = {name: float(params[name][removed[name]].double().square().sum()) for name in removed}
    squares = {name: float(p.double().square().sum()) for name, p in params.items()}

    def ratio(names: Sequence[str]) -> float:
        total = sum(squares[n] for n in names)
        return math.sqrt(sum(dropped.get(n, 0.0) for n in names) / total) if total > 0 else 0.0

    kept_before, norm_sq = before.kept(prunable), sum(squares[n] for n in prunable)
    return PruningEffect(
        sparsity_before=before.sparsity(prunable),
        sparsity_after=after.sparsity(prunable),
        prune_fraction=1.0 - after.kept(prunable) / kept_before if kept_before else 0.0,
        norm_drop=ratio(list(prunable)),
        norm_drop_all=ratio(list(params)),
        norm_before=math.sqrt(norm_sq),
        norm_after=math.sqrt(max(norm_sq - sum(dropped.get(n, 0.0) for n in prunable), 0.0)),
    )


def weight_signs(net: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The signs of ``net``'s named weights (int8: -1, 0, 1), a reference to compare with later."""
    params = dict(net.named_parameters())
    return {n: torch.sign(params[n].detach()).to(torch.int8).cpu() for n in names}


@torch.no_grad()
def sign_flips(net: nn.Module, reference: Mapping[str, torch.Tensor], mask: Mask) -> float:
    """Of the weights ``mask`` keeps, the fraction whose sign differs from ``reference``'s."""
    params = dict(net.named_parameters())
    flipped = kept = 0
    for name, ref in reference.items():
        keep = mask[name].cpu() if name in mask else torch.ones_like(ref, dtype=torch.bool)
        now = torch.sign(params[name].detach()).to(torch.int8).cpu()
        flipped += int(((now != ref) & keep).sum())
        kept += int(keep.sum())
    return flipped / kept if kept else 0.0
