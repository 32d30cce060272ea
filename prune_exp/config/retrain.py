"""The retraining strategy schema (``conf/retrain/``: one YAML file per strategy) and its checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from omegaconf import MISSING

from prune_exp.config.checks import choice, fail, in_range, positive_int
from prune_exp.config.positions import SYNTAX, parse_position

# A retraining strategy is data (Renda et al. 2020, table in retrain/strategies.py): the weights
# at round start, the LR during the round and how long it lasts. conf/retrain/*.yaml are the
# paper's strategies and controls; a user's own is one YAML file in their config dir.
WEIGHTS = ("current", "rewind", "reinit")  # the pruned weights | the dense run's at rewind_to | a fresh init
LR_MODES = ("constant", "replay")  # retrain.finetune_lr | the dense schedule from lr_from on
DURATIONS = ("budget", "full", "none")  # retrain.budget epochs | dense.epochs | no training


@dataclass
class RetrainConfig:
    strategy: str = MISSING  # its name in the records and the report: any name
    weights: str = "current"  # one of WEIGHTS, times the mask
    rewind_to: str | None = None  # weights=rewind: a position in the dense run (config/positions.py)
    lr: str = "constant"  # one of LR_MODES
    lr_from: str | None = None  # lr=replay: the position in the dense schedule at round start
    duration: str = "budget"  # one of DURATIONS
    # the report's names for it: a legend label, a short name for its tables, a matplotlib color
    # (None: the strategy name, and the next color of the palette)
    label: str | None = None
    short: str | None = None
    color: str | None = None
    # t: epochs of retraining after every round, the same for every strategy. 45 of the default
    # dense.epochs=60 spans both LR drops, so LR rewinding replays the large LRs.
    budget: int = 45
    finetune_lr: float | None = None  # lr=constant: the LR; None: the dense schedule's LR at its last step


# The keys of retrain: that every strategy shares; the others say what a strategy is.
SHARED_RETRAIN_KEYS = ("budget", "finetune_lr")
STYLE_KEYS = ("label", "short", "color")  # the report's only: not part of what a job computes
STRATEGY_KEYS = tuple(f.name for f in fields(RetrainConfig) if f.name not in SHARED_RETRAIN_KEYS)


def check_retrain(rt: RetrainConfig, T: int) -> None:
    """A strategy whose parts fit together, with every position inside the dense run (those in
    iterations are checked once the epoch length is known: strategies.plan_round)."""
    if not str(rt.strategy).strip():
        raise fail("retrain.strategy", rt.strategy, "a name for the strategy")
    positive_int("retrain.budget", rt.budget)
    choice("retrain.weights", rt.weights, WEIGHTS)
    choice("retrain.lr", rt.lr, LR_MODES)
    choice("retrain.duration", rt.duration, DURATIONS)
    for key, needed_by, needed in (
        ("rewind_to", "weights=rewind", rt.weights == "rewind"),
        ("lr_from", "lr=replay", rt.lr == "replay"),
    ):
        given = getattr(rt, key) is not None
        if needed and not given:
            raise fail(f"retrain.{key}", None, f"a position ({SYNTAX}): retrain.{needed_by} needs it")
        if given and not needed:
            raise fail(f"retrain.{key}", getattr(rt, key), f"null unless retrain.{needed_by}")
        if given:
            _check_position(f"retrain.{key}", getattr(rt, key), rt, T)
    if rt.finetune_lr is not None:
        in_range("retrain.finetune_lr", rt.finetune_lr, 0.0, math.inf, True, True)


def _check_position(key: str, text: str, rt: RetrainConfig, T: int) -> None:
    try:
        p = parse_position(text)
    except ValueError:
        raise fail(key, text, SYNTAX) from None
    epoch = p.epoch(T, rt.budget)
    if epoch is None or 0 <= epoch <= T:
        return
    if not p.uses_budget:
        raise fail(key, text, f"a position in [0, T] (dense.epochs={T})")
    # epoch = a T + b t + c lies in [0, T] for t between these bounds
    a, b, c = p.epochs_T, p.epochs_t, p.epochs
    lo, hi = sorted(((0 - a * T - c) / b, (T - a * T - c) / b))
    budgets = f"{max(1, math.ceil(lo))}..{math.floor(hi)}" if math.floor(hi) >= max(1, math.ceil(lo)) else "none"
    raise fail(
        "retrain.budget",
        rt.budget,
        f"{budgets} for {rt.strategy}: its {key}={text} must lie in the dense run, and dense.epochs={T}",
    )
