"""Positions in the dense run, as a strategy config writes them: ``0``, ``T-t``, ``3ep``, ``500it``.

A position is a sum of terms, each with a sign:

========  ==========================================================
``T``     the dense run's length: ``dense.epochs`` (or dense.iterations in epochs)
``t``     the retraining budget, ``retrain.budget``
``N``     N epochs (a bare integer)
``Nep``   N epochs
``Nit``   N iterations (optimizer steps), as OpenLTH writes ``500it``
========  ==========================================================

so ``T-t`` is epoch T − t (weight rewinding's point) and ``500it`` is Frankle et al.'s
"late resetting" to iteration 500. It resolves to a whole optimizer step of the dense run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SYNTAX = "a sum of T, t, N (epochs), Nep or Nit, e.g. 0, T-t, 3ep, 500it"
_TERM = re.compile(r"\s*([+-]?)\s*(T|t|\d+ep|\d+it|\d+)\s*")


@dataclass(frozen=True)
class Position:
    """``epochs`` epochs of the dense run plus ``iterations`` steps, each counted with its sign;
    ``uses_budget`` says whether ``t`` appears (so a bad value is the budget's fault)."""

    epochs_T: int  # multiples of T
    epochs_t: int  # multiples of t
    epochs: int
    iterations: int

    @property
    def uses_budget(self) -> bool:
        return self.epochs_t != 0

    def epoch(self, T: int, t: int) -> float | None:
        """The position in epochs, or None if it has iterations (those need the epoch length)."""
        return None if self.iterations else float(self.epochs_T * T + self.epochs_t * t + self.epochs)

    def step(self, T: float, t: int, steps_per_epoch: int) -> int:
        """The optimizer step of the dense run (T may be a fraction: dense.iterations)."""
        epochs = self.epochs_T * T + self.epochs_t * t + self.epochs
        return round(epochs * steps_per_epoch) + self.iterations


def parse_position(text: object) -> Position:
    """ValueError (saying the syntax) unless ``text`` is a position."""
    s = str(text).strip()
    counts = {"T": 0, "t": 0, "ep": 0, "it": 0}
    pos = 0
    while pos < len(s):
        m = _TERM.match(s, pos)
        if m is None or m.end() == pos or (pos and not m.group(1)):
            raise ValueError(f"{text!r} is not a position")
        sign = -1 if m.group(1) == "-" else 1
        term = m.group(2)
        if term in ("T", "t"):
            counts[term] += sign
        elif term.endswith("it"):
            counts["it"] += sign * int(term[:-2])
        else:
            counts["ep"] += sign * int(term.removesuffix("ep"))
        pos = m.end()
    if not s:
        raise ValueError("an empty position")
    return Position(counts["T"], counts["t"], counts["ep"], counts["it"])
