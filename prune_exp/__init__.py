"""prune_exp: prune-retrain experiments, and the pieces of them for your own Lightning script.

The library surface (docs/extending.md, "Use the pieces in your own Lightning script"), imported lazily so
that ``prune-exp --help`` and the report never pay for torch:

- ``Pruner``, ``sparsity_schedule``: which weights each round removes (criterion, structure,
  scope, schedule), as a ``Mask``;
- ``Magnitude``, ``Random``, ``Taylor``; ``Unstructured``, ``Channel``, ``NM``;
- ``MaskEnforcer``: keeps pruned weights exactly 0 through torch's gradient and optimizer hooks
  (``attach`` binds the optimizers; PruneRetrainCycle does it for you);
- ``PruneRetrainCycle``: a Lightning callback that runs the rounds inside one ``fit``;
- ``strategy_config``, ``plan_round``: a retraining strategy (built-in or your YAML file) as
  the plan every round follows; ``LRSchedule``: a dense LR schedule as a function of the epoch;
  ``StrategyLR``: a strategy's LR in every round (``StrategyLR.of(strategy, plan, schedule,
  steps_per_epoch)``, PruneRetrainCycle's ``lr`` for the strategies with their own LR shape).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "Pruner": "prune_exp.pruning.pruner",
    "sparsity_schedule": "prune_exp.pruning.pruner",
    "Mask": "prune_exp.pruning.mask",
    "Magnitude": "prune_exp.pruning.criteria",
    "Random": "prune_exp.pruning.criteria",
    "Taylor": "prune_exp.pruning.criteria",
    "Criterion": "prune_exp.pruning.criteria",
    "Unstructured": "prune_exp.pruning.structure",
    "Channel": "prune_exp.pruning.structure",
    "NM": "prune_exp.pruning.structure",
    "MaskEnforcer": "prune_exp.lit.callbacks",
    "PruneRetrainCycle": "prune_exp.lit.cycle",
    "RoundResult": "prune_exp.lit.callbacks",
    "strategy_config": "prune_exp.retrain.strategies",
    "plan_round": "prune_exp.retrain.strategies",
    "RoundPlan": "prune_exp.retrain.strategies",
    "LRSchedule": "prune_exp.retrain.schedules",
    "StrategyLR": "prune_exp.retrain.lr",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'prune_exp' has no attribute {name!r}")
