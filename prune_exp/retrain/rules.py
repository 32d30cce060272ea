"""LR rules: a round's peak LR decided from what its pruning did (``retrain.lr_rule``).

A rule is any callable, given by ``_target_`` as a metric plug-in is: it gets the round's
:class:`RoundFacts` once per round, after pruning and before training, and returns the peak
(or a mapping with ``peak`` and any other values to record). Its result is part of the round's
state, so a job resumed mid-round keeps it. Built in:

- :class:`ALLR` (Zimmer, Spiegel & Pokutta, ICLR 2023): ``clip(d / sqrt(s) * max, min(t/T, 1) * max, max)``,
  with ``d = ||W - W_p|| / ||W||`` the relative norm drop of this round's pruning and ``s`` the
  fraction of the remaining weights it pruned;
- :class:`SCyc` (Liu, Tan & Motani 2021): a peak that grows over the rounds along an S-curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from prune_exp.config import LR_ANCHORS

NORM_SETS = ("prunable", "all")  # the weights ALLR's norms run over


@dataclass(frozen=True)
class RoundFacts:
    """What a rule sees of a round: its place, what its pruning did, the dense run's LRs."""

    round: int  # 1, 2, ...
    rounds: int
    sparsity_before: float  # the fraction of prunable weights that were zero before this round's pruning
    sparsity_after: float  # ... and after it
    prune_fraction: float  # s: of the prunable weights left before it, the fraction it pruned
    norm_drop: float  # ||W - W_p|| / ||W|| over the prunable weights (W: before, W_p: after pruning)
    norm_drop_all: float  # the same over every parameter of the network
    norm_before: float  # ||W|| over the prunable weights
    norm_after: float  # ||W_p|| over the prunable weights
    epochs: float  # t: the round's retraining epochs
    dense_epochs: float  # T
    dense_lr: Mapping[str, float]  # the dense run's anchors: max, min (after its warmup), last
    pruned: Mapping[str, float] = field(default_factory=dict)  # the metrics right after pruning
    before: Mapping[str, float] = field(default_factory=dict)  # ... and right before it


@dataclass(frozen=True)
class ALLR:
    """Adaptive linear LR restarting: the peak from the norm drop ``d`` and the pruned fraction ``s``.

    ``norms``: ``prunable`` (the default) takes ``d`` over the weights the pruner may prune, the
    set that ``s`` counts, so that magnitude pruning gives ``d <= sqrt(s)`` and a random pruning
    of a fraction ``s`` gives ``d ~ sqrt(s)``, the comparison the paper's ``d / sqrt(s)`` makes;
    ``all`` takes it over every parameter, as the paper's code (ZIB-IOL/BIMP) does.
    ``s`` is the fraction of the remaining weights this round pruned, as BIMP passes it."""

    norms: str = "prunable"

    def __post_init__(self) -> None:
        if self.norms not in NORM_SETS:
            from prune_exp.config.checks import fail

            raise fail("retrain.lr_rule.norms", self.norms, "one of " + ", ".join(NORM_SETS))

    def __call__(self, facts: RoundFacts) -> float:
        top = facts.dense_lr["max"]
        d = facts.norm_drop if self.norms == "prunable" else facts.norm_drop_all
        floor = min(facts.epochs / facts.dense_epochs, 1.0) * top
        if facts.prune_fraction <= 0:  # nothing pruned this round: the smallest restart
            return floor
        return min(max(d / math.sqrt(facts.prune_fraction) * top, floor), top)


@dataclass(frozen=True)
class SCyc:
    """A peak that grows from ``low`` to ``high`` over the rounds along a logistic S-curve:
    ``low + (high - low) * S(x)`` at ``x = (round - 1) / (rounds - 1)``, where ``S`` is the
    logistic ``1 / (1 + exp(-steepness (x - midpoint)))`` rescaled to 0 at x = 0 and 1 at x = 1.
    ``low`` and ``high`` are numbers or the dense run's anchors (max, min, last).

    Liu, Tan & Motani (2021) raise the cyclic LR's upper bound in an S-shape as the network
    is pruned; the curve's exact parameterization here is ours (docs/strategies.md)."""

    low: float | str = "min"
    high: float | str = "max"
    steepness: float = 10.0
    midpoint: float = 0.5

    def __post_init__(self) -> None:
        from prune_exp.config.checks import fail

        for key in ("low", "high"):
            v = getattr(self, key)
            if not (v in LR_ANCHORS or (_number(v) and v > 0)):
                raise fail(f"retrain.lr_rule.{key}", v, f"one of {', '.join(LR_ANCHORS)} or a number > 0")
        if not (_number(self.steepness) and self.steepness > 0):
            raise fail("retrain.lr_rule.steepness", self.steepness, "a number > 0")
        if not _number(self.midpoint):
            raise fail("retrain.lr_rule.midpoint", self.midpoint, "a finite number")

    def __call__(self, facts: RoundFacts) -> dict[str, float]:
        lo, hi = (v if not isinstance(v, str) else facts.dense_lr[v] for v in (self.low, self.high))
        x = (facts.round - 1) / (facts.rounds - 1) if facts.rounds > 1 else 1.0

        def logistic(y: float) -> float:
            return 1.0 / (1.0 + math.exp(-self.steepness * (y - self.midpoint)))

        s = (logistic(x) - logistic(0.0)) / (logistic(1.0) - logistic(0.0))
        return {"peak": lo + (hi - lo) * s, "s_curve": s}


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
