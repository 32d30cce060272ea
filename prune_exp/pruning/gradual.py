"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"), as a plan of steps.

The sparsity follows the cubic ramp

    s(u) = s_f * (1 - (1 - u / n)^3)        u = 0, Δt, 2Δt, ..., n  (then held at s_f)

from 0 at the first step of the retraining run to the target ``s_f`` at step ``n``, and the mask
is updated to it every ``Δt`` = ``prune.every`` steps. The run keeps the round structure of the
iterative arms it is compared with: R rounds (the iterative schedule's number of levels) of
``t`` epochs each, the strategy's LR in every round, so the budget is equal. The ramp ends where
the last round starts, so the last ``t`` epochs retrain at the target, as an iterative arm's last
round does.

The records are written at the iterative arms' sparsity checkpoints (its levels): a level's row
is measured ``Δt`` steps after the first update that reaches it (right before the next update),
its ``pruned_*`` metrics right after that update; the last level's row at the end of the run.
Pure Python: the cycle that runs it is lit/gradual.GradualCycle; job/plan.JobPlan builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from prune_exp.errors import ConfigError

LEVEL_TOLERANCE = 1e-9  # a ramp value this close below a level has reached it (float rounding)


def cubic_sparsity(step: int, ramp_steps: int, target: float) -> float:
    """Zhu & Gupta's sparsity at ``step`` of a ramp from 0 to ``target`` over ``ramp_steps``."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return target
    return target * (1.0 - (1.0 - step / ramp_steps) ** 3)


@dataclass(frozen=True)
class GradualPlan:
    """When the mask changes and when each level's row is measured, in steps of the run."""

    levels: tuple[float, ...]  # the checkpoints: the iterative arms' cumulative sparsities
    steps_per_round: int  # t epochs of optimizer steps
    every: int  # Δt: steps between two updates of the mask

    def __post_init__(self) -> None:
        check_every(self.every, self.rounds, self.steps_per_round)

    @property
    def rounds(self) -> int:
        return len(self.levels)

    @property
    def total_steps(self) -> int:
        return self.rounds * self.steps_per_round

    @property
    def ramp_steps(self) -> int:
        return (self.rounds - 1) * self.steps_per_round

    @cached_property
    def update_steps(self) -> tuple[int, ...]:
        """0, Δt, 2Δt, ... and the ramp's end (where it reaches the target)."""
        steps = list(range(0, self.ramp_steps, self.every))
        return (*steps, self.ramp_steps)

    @cached_property
    def sparsities(self) -> tuple[float, ...]:
        """The sparsity each update prunes to (the Pruner's cumulative targets)."""
        target = self.levels[-1]
        return tuple(cubic_sparsity(u, self.ramp_steps, target) for u in self.update_steps)

    @cached_property
    def reached_at(self) -> tuple[int, ...]:
        """Per level: the index of the first update whose sparsity reaches it."""
        s = self.sparsities
        return tuple(next(i for i, v in enumerate(s) if v >= level - LEVEL_TOLERANCE) for level in self.levels)

    @cached_property
    def record_steps(self) -> tuple[int, ...]:
        """Per level: the step its row is measured at: right before the update after the one that
        reached it, or the end of the run (the last level, or a level only the last update reaches)."""
        last = len(self.update_steps) - 1
        return tuple(
            self.total_steps if (i == last or k == self.rounds - 1) else self.update_steps[i + 1]
            for k, i in enumerate(self.reached_at)
        )


def check_every(every: int, rounds: int, steps_per_round: int, how: str = "") -> None:
    """ConfigError unless ``every`` fits Zhu & Gupta's ramp of n >= 2 updates of Δt = ``every``.

    Their ramp is n * Δt steps long and prunes at each of its n updates after the start (where
    the sparsity is 0). With Δt above half the ramp it holds one whole Δt: n = 1, the mask jumps
    to the target in one update (or, where Δt does not divide the ramp, past 87.5% of it, the rest
    at the ramp's end): one-shot pruning, not gradual. A plan of one round has no ramp (one-shot
    at its start). ``how``: how the rounds' steps come about, for the message."""
    ramp = (rounds - 1) * steps_per_round
    most = ramp // 2
    if rounds < 2 or every <= most:
        return
    allowed = f"an integer in [1, {most}]" if most else "none: a ramp of 1 step has room for one update only"
    raise ConfigError(
        f"prune.every={every} is not allowed with prune.schedule=gradual: its cubic ramp is {ramp} steps (the "
        f"first {rounds - 1} of {rounds} rounds of {steps_per_round} steps{how}), so one update of {every} steps "
        "fits on it and the mask jumps to the target (or past 87.5% of it) at once; allowed: "
        f"{allowed} (two updates or more on the ramp: Zhu & Gupta's n >= 2), or a longer ramp (retrain.budget)"
    )
