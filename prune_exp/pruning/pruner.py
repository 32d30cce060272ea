"""Pruner: criterion + structure + scope + per-round sparsity -> a new, smaller mask.

The math lives in pure functions (``sparsity_schedule``, ``select_lowest``,
``select_lowest_weighted``); :class:`Pruner` binds them to one model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch
import torch.nn.functional as F
from torch import nn

from prune_exp.config import SCOPES, ConfigError, check_patterns, choice
from prune_exp.pruning.criteria import Batches, Criterion, Loss, ScoreContext
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.structure import NM, PRUNABLE_TYPES, ModelGraph, Structure


# ------------------------------------------------------------------------- the round schedule
def sparsity_schedule(target: float, schedule: str, rate: float) -> list[float]:
    """Cumulative target sparsity after each round; the last round hits ``target`` exactly.

    one_shot: ``[target]``. iterative: each round removes ``rate`` of the remaining weights,
    ``1 - (1 - rate)**k``, with the last round clipped to ``target``. gradual: the same levels,
    as the checkpoints its records are written at (pruning/gradual.py).
    """
    if schedule == "one_shot":
        return [target]
    if schedule not in ("iterative", "gradual"):  # gradual: the iterative levels are its checkpoints
        raise ValueError(f"unknown prune schedule {schedule!r}")
    out: list[float] = []
    density = 1.0
    while True:
        density *= 1.0 - rate
        if 1.0 - density >= target - 1e-9:
            return [*out, target]
        out.append(1.0 - density)


def round_fractions(sparsities: Sequence[float]) -> list[float]:
    """Fraction of the then-remaining weights that each round removes."""
    prev, out = 0.0, []
    for s in sparsities:
        out.append(1.0 - (1.0 - s) / (1.0 - prev))
        prev = s
    return out


def scaled_sparsity(sparsities: Sequence[float], round_: int, scale: float) -> float:
    """Cumulative sparsity after ``round_`` rounds of a layer pruned at ``scale`` x each round's fraction."""
    density = math.prod(1.0 - scale * p for p in round_fractions(sparsities)[:round_])
    return 1.0 - density


# --------------------------------------------------------------------------------- selection
def select_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` lowest scores; ties go to the lower index.

    Selection (``kthvalue``), not a sort, so it runs in linear time on any number of weights.
    """
    n = scores.numel()
    out = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k <= 0:
        return out
    if k >= n:
        return ~out
    v = torch.kthvalue(scores, k).values
    out = scores < v
    need = k - int(out.sum())
    out[torch.nonzero(scores == v).flatten()[:need]] = True
    return out


def select_lowest_weighted(scores: torch.Tensor, sizes: torch.Tensor, target: float, at_least: int = 0) -> torch.Tensor:
    """Lowest-scoring units (at least ``at_least``) whose total size is nearest ``target``.

    For units of unequal size; they are taken in (score, index) order, so ties are broken
    deterministically.
    """
    order = torch.sort(scores, stable=True).indices
    cum = torch.cumsum(sizes[order], 0)
    c = int(torch.searchsorted(cum, torch.tensor(float(target), dtype=cum.dtype, device=cum.device)))
    # c units leave us below target, c + 1 reach it: take whichever is nearer (the lower on a tie).
    below = float(cum[c - 1]) if c > 0 else 0.0
    count = c if c >= len(cum) or target - below <= float(cum[c]) - target else c + 1
    out = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    out[order[: max(count, at_least)]] = True
    return out


def _mean_normalized(scores: torch.Tensor) -> torch.Tensor:
    """Scores divided by the mean over the units still alive (the pruned are -inf)."""
    alive = torch.isfinite(scores)
    mean = scores[alive].mean() if bool(alive.any()) else scores.new_ones(())
    return scores / mean if float(mean) > 0 else scores


def _keep_at_least(keep: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """``keep`` with the best-scoring units added back until at least ``k`` are kept."""
    short = k - int(keep.sum())
    if short <= 0:
        return keep
    candidates = torch.where(keep | ~torch.isfinite(scores), -math.inf, scores)  # never revive pruned
    revive = torch.topk(candidates, min(short, int(torch.isfinite(candidates).sum()))).indices
    keep = keep.clone()
    keep[revive] = True
    return keep


# ------------------------------------------------------------------------------------ pruner
@dataclass(frozen=True)
class Layer:
    """One prunable weight tensor."""

    param: str  # parameter name, e.g. "conv1.weight"
    module: str  # its module, e.g. "conv1"
    scale: float  # multiplier of every round's pruning fraction (prune.layer_rate_scale)


class Pruner:
    """Prunes one model, round by round, to the cumulative ``sparsities``."""

    def __init__(
        self,
        model: nn.Module,
        *,
        criterion: Criterion,
        structure: Structure,
        scope: str,
        sparsities: Sequence[float],
        seed: int = 0,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        layer_rate_scale: Mapping[str, float] | None = None,
        score_batches: Batches | None = None,
        score_loss: Loss = F.cross_entropy,
    ) -> None:
        choice("prune.scope", scope, SCOPES)
        self.model = model
        self.criterion, self.structure, self.scope = criterion, structure, scope
        self.sparsities = list(sparsities)
        self.seed = seed
        self.score_batches = score_batches  # training batches, for data-driven criteria (Taylor)
        self.score_loss = score_loss  # the task's loss, which they differentiate
        self.graph = ModelGraph(model)
        self.layers = self._select_layers(list(include), list(exclude), dict(layer_rate_scale or {}))
        self.prunable_names = [layer.param for layer in self.layers]
        deps = [d for layer in self.layers for d in structure.dependents(layer.module, self.graph)]
        self.masked_names = self.prunable_names + deps

    @property
    def rounds(self) -> int:
        return len(self.sparsities)

    def _select_layers(self, include: list[str], exclude: list[str], scales: dict[str, float]) -> list[Layer]:
        """Every Conv/Linear weight (first layer and classifier included), filtered by name."""
        candidates = [
            (f"{name}.weight", name) for name, m in self.model.named_modules() if isinstance(m, PRUNABLE_TYPES)
        ]
        names = [p for p, _ in candidates]
        check_patterns(include, exclude, list(scales), names)
        layers = []
        for param, module in candidates:
            if include and not any(fnmatchcase(param, p) for p in include):
                continue
            if any(fnmatchcase(param, p) for p in exclude) or self.structure.skips(module, self.graph):
                continue
            matched = [s for p, s in scales.items() if fnmatchcase(param, p)]
            if len(matched) > 1:
                raise ConfigError(
                    f"prune.layer_rate_scale: {param} matches {len(matched)} patterns; "
                    "allowed: at most one pattern per parameter"
                )
            layers.append(Layer(param, module, matched[0] if matched else 1.0))
        if not layers:
            raise ConfigError(
                f"no prunable parameters left after prune.include={include}, "
                f"prune.exclude={exclude} and structure={self.structure.name}; "
                f"allowed: patterns that keep at least one of {', '.join(names)}"
            )
        return layers

    def initial_mask(self) -> Mask:
        """Keeps everything: the dense model's mask."""
        return Mask.ones(dict(self.model.named_parameters()), self.masked_names)

    def layer_target(self, layer: Layer, round_: int) -> float:
        """Cumulative sparsity this layer must reach after ``round_`` rounds."""
        if layer.scale == 1.0:
            return self.sparsities[round_ - 1]
        return scaled_sparsity(self.sparsities, round_, layer.scale)

    @torch.no_grad()
    def prune(self, mask: Mask, round_: int) -> Mask:
        """The mask after round ``round_`` (1-based): ``mask`` minus the lowest-scoring units."""
        if not 1 <= round_ <= self.rounds:
            raise ValueError(f"round {round_} is outside 1..{self.rounds}")
        params = dict(self.model.named_parameters())
        scores = self.criterion.unit_scores(
            {ly.param: params[ly.param] for ly in self.layers},
            ScoreContext(self.model, round_, self.seed, self.score_batches, self.score_loss),
            self.structure,
        )
        if isinstance(self.structure, NM):  # selection inside each group of m, no ranking of layers
            return self._prune_nm(mask, params, scores)
        unit_scores, shapes = {}, {}
        for ly in self.layers:
            s = scores[ly.param].float()
            if torch.isnan(s).any():
                raise FloatingPointError(f"pruning scores of {ly.param} contain NaN: did training diverge?")
            alive = self.structure.unit_alive(mask[ly.param]).to(s.device)
            unit_scores[ly.param] = torch.where(alive, s, torch.full_like(s, -math.inf))
            shapes[ly.param] = params[ly.param].shape

        groups = self._groups(round_)
        if self.scope == "global" and self.structure.normalize_globally:
            unit_scores = {n: _mean_normalized(s) for n, s in unit_scores.items()}
        new = dict(mask)
        for layers, target in groups:
            s = torch.cat([unit_scores[ly.param] for ly in layers])
            sizes = torch.cat(
                [
                    torch.full(
                        (len(unit_scores[ly.param]),),
                        self.structure.unit_size(shapes[ly.param]),
                        dtype=torch.float64,
                        device=s.device,
                    )
                    for ly in layers
                ]
            )
            dead = int(torch.isinf(s).sum())
            if bool((sizes == sizes[0]).all()):
                chosen = select_lowest(s, max(dead, round(target * len(s))))
            else:
                chosen = select_lowest_weighted(s, sizes, target * float(sizes.sum()), at_least=dead)
            for ly, pruned in zip(
                layers, torch.split(chosen, [len(unit_scores[x.param]) for x in layers]), strict=True
            ):
                keep = _keep_at_least(~pruned, unit_scores[ly.param], self.structure.min_kept_units)
                new[ly.param] = self.structure.expand(keep, shapes[ly.param])
                for dep in self.structure.dependents(ly.module, self.graph):
                    new[dep] = keep.clone()
        out = Mask(new)
        assert out.is_subset_of(mask), "a pruning round must never revive a pruned weight"
        return out

    def _prune_nm(self, mask: Mask, params: dict[str, torch.Tensor], scores: dict[str, torch.Tensor]) -> Mask:
        """N:M: each layer's new mask from its ``scores``, selected inside each group of m."""
        new = dict(mask)
        for ly in self.layers:
            shape = params[ly.param].shape
            keep = mask[ly.param]
            chosen = self.structure.select(scores[ly.param].reshape(shape), keep.to(params[ly.param].device))
            new[ly.param] = chosen.to(keep.device)
        return Mask(new)

    def _groups(self, round_: int) -> list[tuple[list[Layer], float]]:
        """The layers ranked together in round ``round_``, each group with its target sparsity:
        layerwise, every layer alone; global, the layers at the default rate together."""
        if self.scope == "layerwise":
            groups = [([ly], self.layer_target(ly, round_)) for ly in self.layers]
        else:  # one global threshold over the layers at the default rate; scaled ones on their own
            shared = [ly for ly in self.layers if ly.scale == 1.0]
            groups = [([ly], self.layer_target(ly, round_)) for ly in self.layers if ly.scale != 1.0]
            if shared:
                groups.append((shared, self.sparsities[round_ - 1]))
        return groups
