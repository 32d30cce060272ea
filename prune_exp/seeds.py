"""Derived seeds: every random stream of a job is a pure function of the run's seed and an index.

The data order of an epoch, the random criterion's scores of a round, the fresh init of a
reinit round and an epoch's augmentation each draw from ``derive_seed(seed, index)``, so a
resumed run draws exactly what an uninterrupted one would, and two seeds never share a stream
(the stride is a prime larger than any epoch or round count). Standard library only.
"""

from __future__ import annotations

STRIDE = 1_000_003


def derive_seed(seed: int, index: int) -> int:
    """The seed of stream ``index`` (an epoch, a round) of the run seeded ``seed``."""
    return seed * STRIDE + index
