"""A round's LR as a pure function of its step: a warmup, then a shape, with a peak and an end
anchored to the dense run (config/retrain.py has the keys; docs/strategies.md the strategies).

A round of `n` steps warms up over its first `w = floor(lr_warmup * n)` steps, then follows
its shape over the other `m = n - w`. Step `i` of the warmup and step `j = i - w` after it:

| part | the LR at its step |
|---|---|
| warmup `linear` | lr(shape's first step) · i / w |
| warmup `cosine` | lr(shape's first step) · (1 − cos(π i / w)) / 2 (BIMP's warmup) |
| `constant` | peak |
| `replay` | the dense run's LR at its step `lr_from + j` (held at its last past T) |
| `scaled` | the dense run's LR at step ⌊j N / m⌋ of its N, times peak / its max (SLR; see below) |
| `cosine` | end + (peak − end) (1 + cos(π j / m)) / 2 (CLR) |
| `linear` | peak + (end − peak) j / m (LLR; ALLR with a rule's peak) |

With `scaled`, the dense run's own warmup steps count as its max: SLR as Le & Hua (2021) define it and BIMP
writes it.

A peak or end is a number or an anchor: the dense run's `max` LR, its `min` after its own
warmup, its `last` (the LR of its last step). With a rule (retrain/rules.py) the peak is the
rule's, decided once per round after pruning. Every LR is a function of the step within the
round and the round's peak alone, so a resumed round and N fused arms get exactly the same LRs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prune_exp.config import LR_ANCHORS, ConfigError, RetrainConfig
from prune_exp.config.targets import instantiate_at
from prune_exp.retrain.schedules import LRSchedule
from prune_exp.retrain.strategies import RoundPlan
from prune_exp.store.columns import LR_CURVE, LR_CURVE_POINTS

Schedule = Callable[[float], float]  # the LR at a (fractional) epoch of the dense run
_EXTREMES: dict[tuple, tuple[float, float]] = {}  # DenseLR's extremes by schedule (repr), steps


@dataclass(frozen=True)
class DenseLR:
    """The dense run's LR at each of its ``steps`` optimizer steps, and its anchors."""

    schedule: Schedule
    steps_per_epoch: int
    steps: int  # N: the dense run's optimizer steps (0: unknown, as for a user's function)
    warmup_steps: int = 0  # its own warmup's steps: excluded from "min", raised to "max" by scaled

    @classmethod
    def of(cls, schedule: LRSchedule, steps_per_epoch: int) -> DenseLR:
        """The dense run of ``schedule`` (over its T epochs) on data of ``steps_per_epoch``."""
        steps = round(schedule.total_epochs * steps_per_epoch)
        warm = schedule.config.warmup_epochs
        warmup = next((s for s in range(steps) if s / steps_per_epoch >= warm), steps) if warm > 0 else 0
        return cls(schedule, steps_per_epoch, steps, warmup)

    def at(self, step: int) -> float:
        return self.schedule(step / self.steps_per_epoch)

    @functools.cached_property
    def _extremes(self) -> tuple[float, float]:
        """The largest LR and the smallest after the warmup: one pass over the steps, once per
        dense schedule in the process (a sweep's preflight plans every job; an ImageNet run has
        ~10^5 steps)."""
        key = (repr(self.schedule), self.steps_per_epoch, self.steps, self.warmup_steps)
        if key not in _EXTREMES:
            lrs = [self.at(s) for s in range(self.steps)]
            _EXTREMES[key] = (max(lrs), min(lrs[self.warmup_steps :] or lrs))
        return _EXTREMES[key]

    def anchor(self, name: str) -> float:
        """``max``, ``min`` (after the dense warmup) or ``last``."""
        if self.steps <= 0:
            raise ConfigError(f"the LR anchor {name!r} needs the dense run's length, which this LR does not know")
        if name == "last":
            return self.at(self.steps - 1)
        return self._extremes[0] if name == "max" else self._extremes[1]


@dataclass(frozen=True)
class RoundLR:
    """One round's LR at each of its ``steps`` steps: :meth:`__call__` with the step in the round."""

    shape: str  # config.LR_SHAPES
    steps: int  # n
    peak: float = 0.0  # constant, scaled, cosine, linear
    end: float = 0.0  # cosine, linear
    warmup_steps: int = 0  # w
    warmup_shape: str = "linear"
    dense: DenseLR | None = None  # replay, scaled
    start_step: int = 0  # replay: the dense step of the shape's first step

    def __call__(self, i: int) -> float:
        w = self.warmup_steps
        if i >= w:
            return self._shape(i - w)
        x = i / w
        ramp = x if self.warmup_shape == "linear" else (1.0 - math.cos(math.pi * x)) / 2.0
        return self._shape(0) * ramp

    def _shape(self, j: int) -> float:
        if self.shape == "constant":
            return self.peak
        m = self.steps - self.warmup_steps
        if self.shape in ("replay", "scaled"):
            d = self.dense
            assert d is not None, f"lr={self.shape} replays the dense run's LR"
            if self.shape == "replay":
                return d.at(self.start_step + j)
            k = min(j * d.steps // m, d.steps - 1)
            top = d.anchor("max")
            return (top if k < d.warmup_steps else d.at(k)) * (self.peak / top)
        p = min(j / m, 1.0)
        if self.shape == "cosine":
            return self.end + (self.peak - self.end) * (1.0 + math.cos(math.pi * p)) / 2.0
        return self.peak + (self.end - self.peak) * p

    def summary(self, points: int = LR_CURVE_POINTS) -> dict[str, Any]:
        """The records' columns: the LR at the round's first step, its largest, at its last
        step, and at ``points`` evenly spaced steps from the first to the last (the report's figure)."""
        lrs = [self(i) for i in range(self.steps)] or [self(0)]
        last = len(lrs) - 1
        curve = [lrs[round(k * last / (points - 1))] for k in range(points)]
        return {"lr_start": lrs[0], "lr_peak": max(lrs), "lr_end": lrs[-1], LR_CURVE: curve}


Rule = Callable[..., float]  # retrain/rules.py: RoundFacts -> the round's peak


@dataclass(frozen=True)
class StrategyLR:
    """A strategy's LR in every round: a RoundLR whose peak is fixed, or a ``rule``'s per round."""

    shape: str
    round_steps: int  # n: the steps of one round
    dense: DenseLR | None
    peak: float | None = None  # None with a rule
    end: float = 0.0
    warmup: float = 0.0  # retrain.lr_warmup
    warmup_shape: str = "linear"
    start_step: int = 0  # replay: the dense step the round's shape starts at
    rule: Rule | None = None
    dense_epochs: float = 0.0  # T (a rule's fact)

    @classmethod
    def of(cls, rt: RetrainConfig, plan: RoundPlan, schedule: LRSchedule, steps_per_epoch: int) -> StrategyLR:
        """``rt``'s LR in the rounds of ``plan`` (plan_round's, which checked that its keys fit
        together), after a dense run of ``schedule`` on data of ``steps_per_epoch``; ConfigError,
        naming the key, for an end above the peak or a rule that cannot be built."""
        dense = DenseLR.of(schedule, steps_per_epoch)
        round_steps, start_step = plan.epochs * steps_per_epoch, plan.lr_start_step
        peak: float | None = None
        if rt.lr == "constant" and rt.lr_peak is None and rt.lr_rule is None:  # FT's default
            peak = rt.finetune_lr if rt.finetune_lr is not None else dense.anchor("last")
        elif rt.lr_peak is not None:
            peak = _resolve(rt.lr_peak, dense)
        end = _resolve(rt.lr_end, dense) if rt.lr_end is not None else 0.0
        if rt.lr in ("cosine", "linear") and peak is not None and end > peak:
            raise ConfigError(
                f"retrain.lr_end={rt.lr_end!r} is not allowed; allowed: at most retrain.lr_peak={rt.lr_peak!r} "
                f"({end:g} > {peak:g}): lr={rt.lr} decays from its peak to its end"
            )
        rule = instantiate_at("retrain.lr_rule", rt.lr_rule) if rt.lr_rule is not None else None
        if rule is not None and not callable(rule):
            raise ConfigError(f"retrain.lr_rule={rt.lr_rule!r} is not allowed; allowed: a callable's _target_")
        T = dense.steps / dense.steps_per_epoch
        return cls(rt.lr, round_steps, dense, peak, end, rt.lr_warmup, rt.lr_warmup_shape, start_step, rule, T)

    @classmethod
    def legacy(cls, lr: Schedule | float, round_steps: int, start_step: int, steps_per_epoch: int) -> StrategyLR:
        """A library user's ``lr``: a constant, or the dense schedule replayed from ``start_step``."""
        if isinstance(lr, (int, float)):
            return cls("constant", round_steps, None, float(lr))
        return cls("replay", round_steps, DenseLR(lr, steps_per_epoch, 0), start_step=start_step)

    def anchors(self) -> dict[str, float]:
        """The dense run's max, min (after its warmup) and last LR: what a rule may scale."""
        assert self.dense is not None
        return {name: self.dense.anchor(name) for name in LR_ANCHORS}

    def round_lr(self, peak: float | None = None) -> RoundLR:
        """The round's LR; ``peak``: the rule's for this round (None: the strategy's own)."""
        peak = self.peak if peak is None else peak
        return RoundLR(
            shape=self.shape,
            steps=self.round_steps,
            peak=0.0 if peak is None else peak,
            end=self.end,
            warmup_steps=math.floor(self.warmup * self.round_steps),
            warmup_shape=self.warmup_shape,
            dense=self.dense,
            start_step=self.start_step,
        )

    def rule_peak(self, facts: Any) -> tuple[float, dict[str, Any]]:
        """The rule's peak for a round with these facts (rules.RoundFacts), and what else it
        returned (a mapping with ``peak`` and other values: recorded with it); ConfigError,
        naming the key, unless the peak is a finite number > 0, and at least the end."""
        assert self.rule is not None
        out = self.rule(facts)
        values = dict(out) if isinstance(out, Mapping) else {"peak": out}
        value = values.pop("peak", None)
        try:  # a Python, numpy or 0-d torch number
            value = None if isinstance(value, (bool, str)) else float(value)
        except (TypeError, ValueError):
            pass
        ok = isinstance(value, float) and math.isfinite(value) and value > 0
        decays = self.shape in ("cosine", "linear")
        if not ok or (decays and value < self.end):
            raise ConfigError(
                f"retrain.lr_rule gave the peak {value!r} for round {facts.round}; allowed: a finite LR > 0"
                + (f", at least retrain.lr_end ({self.end:g})" if decays else "")
                + " (a number, or a mapping with a 'peak')"
            )
        return float(value), values


def _resolve(value: Any, dense: DenseLR) -> float:
    return dense.anchor(value) if isinstance(value, str) else float(value)
