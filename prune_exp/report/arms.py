"""The arms a report compares: a job's strategy, and a gradual job as an arm of its own.

A gradual job (prune.schedule=gradual, pruning/gradual.py) writes its rows at the levels of
the iterative schedule with the same rate and target, so it sits in the same tables as the
iterative arms: its strategy reads ``finetune (gradual)`` (with ``prune.every`` when the sweep
has several), its label and short name say so too, and ``prune.schedule`` / ``prune.every``
are not settings. The records' own ``schedule`` column keeps ``gradual``.
"""

from __future__ import annotations

import pandas as pd

GRADUAL = "gradual"
SHORT_PREFIX = "GMP-"  # gradual magnitude pruning: GMP-FT next to FT


def gradual_arms(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every gradual job named as its own arm (a copy; ``df`` as it is without any)."""
    if "schedule" not in df or not (df["schedule"] == GRADUAL).any():
        return df
    out = df.copy()
    g = out["schedule"] == GRADUAL
    several = "prune.every" in out and out.loc[g, "prune.every"].nunique() > 1
    tag = " (gradual" + (", every " + out.loc[g, "prune.every"].astype(int).astype(str) if several else "") + ")"
    out.loc[g, "strategy"] = out.loc[g, "strategy"].astype(str) + tag
    if "retrain.label" in out:
        out.loc[g, "retrain.label"] = out.loc[g, "retrain.label"].fillna(out.loc[g, "strategy"]).astype(str) + tag
    if "retrain.short" in out:
        out.loc[g, "retrain.short"] = SHORT_PREFIX + out.loc[g, "retrain.short"].astype(str)
    if "retrain.color" in out:
        out["retrain.color"] = out["retrain.color"].astype(object)
        out.loc[g, "retrain.color"] = None  # the next free color of the palette
    if "prune.schedule" in out:
        out.loc[g, "prune.schedule"] = "iterative"  # the levels it shares with them
    return out.drop(columns=[c for c in ("prune.every",) if c in out])
