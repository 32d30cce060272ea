"""The pruning schemas: criterion (``conf/prune/criterion/``), scope and schedule
(``conf/prune/``), structure (``conf/structure/``), and their checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from prune_exp.config.checks import choice, fail, in_range, positive_int
from prune_exp.errors import ConfigError


@dataclass
class MagnitudeConfig:
    _target_: str = "prune_exp.pruning.criteria.Magnitude"


@dataclass
class RandomConfig:
    _target_: str = "prune_exp.pruning.criteria.Random"


@dataclass
class TaylorConfig:
    _target_: str = "prune_exp.pruning.criteria.Taylor"
    batches: int = 16  # training batches the first-order Taylor scores are accumulated over


SCOPES = ("global", "layerwise")
PRUNE_SCHEDULES = ("one_shot", "iterative", "gradual")  # gradual: Zhu & Gupta's cubic ramp (pruning/gradual.py)


@dataclass
class PruneConfig:
    criterion: Any = MISSING  # from the group prune/criterion
    sparsity: float = 0.9  # target fraction of prunable weights removed at the end
    schedule: str = "iterative"  # one of PRUNE_SCHEDULES
    # iterative: fraction of the *remaining* weights removed per round; gradual: the same, for
    # the iterative arms' levels it is compared with (its rounds and its record checkpoints)
    rate: float = 0.2
    every: int = 100  # gradual: optimizer steps between two updates of the mask (Zhu & Gupta's Δt)
    # iterative: this many rounds at `rate` in place of a target (OpenLTH's levels): the target
    # sparsity becomes 1 - (1 - rate)^rounds (rounds_target), which to_run_config puts in place
    rounds: int | None = None
    scope: str = "global"  # global (one threshold) | layerwise (same fraction per layer)
    include: list[str] = field(default_factory=list)  # fnmatch on parameter names; [] = all
    exclude: list[str] = field(default_factory=list)
    # pattern -> multiplier of the round's pruning fraction for matching layers
    # (the LTH paper prunes the output layer at half rate: {"classifier.*": 0.5})
    layer_rate_scale: dict[str, float] = field(default_factory=dict)


@dataclass
class UnstructuredConfig:
    _target_: str = "prune_exp.pruning.structure.Unstructured"


@dataclass
class ChannelConfig:
    _target_: str = "prune_exp.pruning.structure.Channel"


@dataclass
class NMConfig:
    _target_: str = "prune_exp.pruning.structure.NM"
    n: int = 2  # keep n of every m consecutive weights along the input dim (2:4 by default)
    m: int = 4


def round_fractions_max(prune: PruneConfig) -> float:
    """The largest fraction of the remaining weights that any single round removes."""
    if prune.schedule == "one_shot":
        return prune.sparsity
    return min(prune.rate, prune.sparsity)


def check_patterns(include: list[str], exclude: list[str], scales: list[str], names: list[str]) -> None:
    """Every pattern of ``prune.include``, ``prune.exclude`` and ``prune.layer_rate_scale``
    matches one of the model's prunable parameters ``names`` (the Pruner runs this)."""
    from fnmatch import fnmatchcase

    for key, patterns in (("prune.include", include), ("prune.exclude", exclude), ("prune.layer_rate_scale", scales)):
        for pat in patterns:
            if not any(fnmatchcase(n, pat) for n in names):
                allowed = f"fnmatch patterns over {', '.join(names)}"
                raise ConfigError(f"{key} pattern {pat!r} matches no prunable parameter; allowed: {allowed}")


def rounds_target(rate: float, rounds: int) -> float:
    """The sparsity after ``rounds`` rounds that each remove ``rate`` of the remaining weights,
    multiplied out as pruner.sparsity_schedule does, so that it gives exactly ``rounds`` rounds."""
    density = 1.0
    for _ in range(rounds):
        density *= 1.0 - rate
    return 1.0 - density


def check_prune(pr: PruneConfig, st: Any) -> None:
    if pr.rounds is not None:
        positive_int("prune.rounds", pr.rounds)
        if pr.schedule == "one_shot":
            raise fail("prune.schedule", pr.schedule, "iterative or gradual with prune.rounds (one_shot is one round)")
        in_range("prune.rate", pr.rate, 0.0, 1.0, True, True)  # before the sparsity it gives
    in_range("prune.sparsity", pr.sparsity, 0.0, 1.0, False, True)
    choice("prune.schedule", pr.schedule, PRUNE_SCHEDULES)
    in_range("prune.rate", pr.rate, 0.0, 1.0, True, True)
    choice("prune.scope", pr.scope, SCOPES)
    positive_int("prune.every", pr.every)
    biggest = round_fractions_max(pr)
    for pattern, scale in pr.layer_rate_scale.items():
        hi = 1.0 / biggest if biggest > 0 else math.inf
        if pr.schedule == "gradual":  # an update's fraction depends on the ramp: at most the default rate
            hi = 1.0
        in_range(f"prune.layer_rate_scale[{pattern}]", scale, 0.0, hi, True, pr.schedule != "gradual")

    if isinstance(pr.criterion, TaylorConfig):
        positive_int("prune.criterion.batches", pr.criterion.batches)
    if isinstance(st, NMConfig):
        if not (isinstance(st.m, int) and st.m >= 2):
            raise fail("structure.m", st.m, "an integer >= 2 (n:m keeps n of every m weights)")
        if not (isinstance(st.n, int) and 1 <= st.n < st.m):
            raise fail("structure.n", st.n, f"an integer in [1, structure.m={st.m})")
        if pr.schedule != "one_shot":
            raise fail("prune.schedule", pr.schedule, "one_shot for structure=nm (an n:m mask is reached in one step)")
        implied = 1 - st.n / st.m
        if abs(pr.sparsity - implied) > 1e-9:
            raise fail(
                "prune.sparsity",
                pr.sparsity,
                f"{implied:g} for structure=nm ({st.n}:{st.m} keeps {st.n} of every {st.m})",
            )
