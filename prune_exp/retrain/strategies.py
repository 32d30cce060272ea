"""Retraining strategies (Renda, Frankle & Carbin 2020) as round plans.

Every strategy spends the same budget ``t`` after every round, except the controls:

=============  ===============================  ===================================  ======
strategy       weights at round start           LR during the round                  epochs
=============  ===============================  ===================================  ======
finetune       current (pruned) weights         constant (default: dense final LR)   t
weight_rewind  theta_{T-t} * m (dense run)      dense schedule, epochs T-t .. T      t
lr_rewind      current (pruned) weights         dense schedule, epochs T-t .. T      t
lottery        theta_0 * m                      full dense schedule                  T
reinit         fresh random init * m            full dense schedule                  T
none           current weights                  (no training)                        0
=============  ===============================  ===================================  ======
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RoundPlan:
    """What a strategy does in every round."""

    strategy: str
    epochs: int
    weights: Literal["current", "rewind", "reinit"]
    rewind_epoch: int | None  # dense epoch to restore (weights == "rewind")
    lr: Literal["constant", "dense", "none"]
    lr_start_epoch: int  # position in the dense schedule at round start (lr == "dense")


def plan_round(strategy: str, budget: int, dense_epochs: int) -> RoundPlan:
    """The plan every round of ``strategy`` follows, for budget ``t`` out of ``T`` dense epochs."""
    t, T = budget, dense_epochs
    if strategy == "finetune":
        return RoundPlan(strategy, t, "current", None, "constant", 0)
    if strategy == "weight_rewind":
        return RoundPlan(strategy, t, "rewind", T - t, "dense", T - t)
    if strategy == "lr_rewind":
        return RoundPlan(strategy, t, "current", None, "dense", T - t)
    if strategy == "lottery":
        return RoundPlan(strategy, T, "rewind", 0, "dense", 0)
    if strategy == "reinit":
        return RoundPlan(strategy, T, "reinit", None, "dense", 0)
    if strategy == "none":
        return RoundPlan(strategy, 0, "current", None, "none", 0)
    raise ValueError(f"unknown retrain strategy {strategy!r}")
