"""Criteria: per-weight importance scores (higher = more important, kept longer)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ScoreContext:
    """What a criterion may look at besides the weights."""

    model: nn.Module
    round: int  # 1-based pruning round
    seed: int


class Criterion(ABC):
    name: str

    @abstractmethod
    def scores(self, weights: Mapping[str, torch.Tensor], ctx: ScoreContext) -> dict[str, torch.Tensor]:
        """Return a float score tensor shaped like each weight."""


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
        g = torch.Generator().manual_seed(ctx.seed * 1_000_003 + ctx.round)
        return {n: torch.rand(w.shape, generator=g).to(w.device) for n, w in weights.items()}
