"""The retraining strategy schema (``conf/retrain/``: one YAML file per strategy) and its checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from omegaconf import MISSING

from prune_exp.config.checks import choice, fail, in_range, positive_int
from prune_exp.config.positions import SYNTAX, parse_position

# A retraining strategy is data (Renda et al. 2020, table in retrain/strategies.py): the weights
# at round start, the LR during the round and how long it lasts. conf/retrain/*.yaml are the
# paper's strategies, the ones published since (SLR, CLR, LLR, ALLR) and controls; a user's own
# is one YAML file in their config dir. The LR's vocabulary: retrain/lr.py.
WEIGHTS = ("current", "rewind", "reinit")  # the pruned weights | the dense run's at rewind_to | a fresh init
# a round's LR over its steps (after its warmup): lr_peak throughout | the dense schedule from
# lr_from on | the whole dense schedule compressed into the round (SLR) | cosine from lr_peak to
# lr_end (CLR) | linear from lr_peak to lr_end (LLR)
LR_SHAPES = ("constant", "replay", "scaled", "cosine", "linear")
WARMUP_SHAPES = ("linear", "cosine")  # from 0 up to the shape's first LR, over lr_warmup of the round
LR_ANCHORS = ("max", "min", "last")  # the dense run's largest LR, its smallest after its warmup, its last
PEAKED = ("constant", "scaled", "cosine", "linear")  # the shapes with an lr_peak
ENDED = ("cosine", "linear")  # the shapes with an lr_end
BUILTIN_RULES = ("prune_exp.retrain.rules.ALLR", "prune_exp.retrain.rules.SCyc")  # the built-in lr_rule targets
DURATIONS = ("budget", "full", "none")  # retrain.budget epochs | dense.epochs | no training


@dataclass
class RetrainConfig:
    strategy: str = MISSING  # its name in the records and the report: any name
    weights: str = "current"  # one of WEIGHTS, times the mask
    rewind_to: str | None = None  # weights=rewind: a position in the dense run (config/positions.py)
    lr: str = "constant"  # its shape: one of LR_SHAPES
    lr_from: str | None = None  # lr=replay: the position in the dense schedule at round start
    # lr's peak and end: one of LR_ANCHORS or a number. lr=constant: lr_peak null is
    # retrain.finetune_lr, or the dense run's last LR; lr=linear: lr_end null is 0.
    lr_peak: Any = None
    lr_end: Any = None
    lr_warmup: float = 0.0  # the fraction of the round's steps that warms up, in [0, 1)
    lr_warmup_shape: str = "linear"  # one of WARMUP_SHAPES
    lr_rule: Any = None  # {_target_: ..., its arguments}: a callable giving each round's peak (retrain/rules.py)
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
# Keys added after job dirs and cache entries existed: a config hashes them only where they are
# not their default, so a strategy that uses none of them keeps its fingerprint (run.hashed_retrain).
LATER_KEYS: dict[str, Any] = {
    f.name: f.default
    for f in fields(RetrainConfig)
    if f.name in ("lr_peak", "lr_end", "lr_warmup", "lr_warmup_shape", "lr_rule")
}


def check_retrain(rt: RetrainConfig, T: int) -> None:
    """A strategy whose parts fit together, with every position inside the dense run (those in
    iterations are checked once the epoch length is known: strategies.plan_round)."""
    if not str(rt.strategy).strip():
        raise fail("retrain.strategy", rt.strategy, "a name for the strategy")
    positive_int("retrain.budget", rt.budget)
    choice("retrain.weights", rt.weights, WEIGHTS)
    choice("retrain.lr", rt.lr, LR_SHAPES)
    choice("retrain.duration", rt.duration, DURATIONS)
    _check_lr_vocabulary(rt)
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


def _check_lr_vocabulary(rt: RetrainConfig) -> None:
    """The LR's peak, end, warmup and rule fit its shape (their values against the dense run:
    retrain/lr.StrategyLR)."""
    ruled = rt.lr_rule is not None
    for key, shapes, needed in (
        ("lr_peak", PEAKED, rt.lr in ("scaled", "cosine", "linear") and not ruled),
        ("lr_end", ENDED, rt.lr == "cosine"),
    ):
        value = getattr(rt, key)
        if value is None and needed:
            raise fail(
                f"retrain.{key}", None, f"one of {', '.join(LR_ANCHORS)} or a number: retrain.lr={rt.lr} needs it"
            )
        if value is not None and rt.lr not in shapes:
            raise fail(f"retrain.{key}", value, f"null unless retrain.lr is one of {', '.join(shapes)}")
        can_be_0 = key == "lr_end"  # (a peak of 0 would not train)
        if value is not None and not (value in LR_ANCHORS or (_is_number(value) and (value > 0 or can_be_0))):
            what = "a number >= 0" if can_be_0 else "a number > 0"
            raise fail(f"retrain.{key}", value, f"one of {', '.join(LR_ANCHORS)} or {what}")
    in_range("retrain.lr_warmup", rt.lr_warmup, 0.0, 1.0, False, True)
    choice("retrain.lr_warmup_shape", rt.lr_warmup_shape, WARMUP_SHAPES)
    if ruled:
        target = rt.lr_rule.get("_target_") if isinstance(rt.lr_rule, dict) else None
        if not isinstance(target, str) or not target.strip():
            raise fail("retrain.lr_rule", rt.lr_rule, "null, or a mapping with a _target_ (a callable's import path)")
        if rt.lr not in PEAKED:
            raise fail("retrain.lr_rule", rt.lr_rule, f"null unless retrain.lr is one of {', '.join(PEAKED)}")
        if rt.lr_peak is not None:
            raise fail("retrain.lr_peak", rt.lr_peak, "null with a retrain.lr_rule: the rule gives each round's peak")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


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
