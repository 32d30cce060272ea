"""The arms a report compares: a job's strategy, and a gradual job as an arm of its own.

A gradual job (prune.schedule=gradual, pruning/gradual.py) writes its rows at the levels of
the iterative schedule with the same rate and target, so it sits in the same tables as the
iterative arms: its strategy reads ``finetune (gradual)`` (with ``prune.every`` when the sweep
has several), its label and short name say so too, and ``prune.schedule`` / ``prune.every``
are not settings. The records' own ``schedule`` column keeps ``gradual``.

An arm's name is the whole of what the report knows it by, so ``check_arms`` refuses two jobs
that give one name to different strategies, and two names with one short name: the report
would merge the first into one column and the second into one paired difference. The sweep's
preflight runs the same check on its jobs' configs before any job runs.
"""

from __future__ import annotations

import pandas as pd

from prune_exp.config import STRATEGY_KEYS, STYLE_KEYS
from prune_exp.errors import ConfigError

GRADUAL = "gradual"
SHORT_PREFIX = "GMP-"  # gradual magnitude pruning: GMP-FT next to FT
# What a strategy is, besides its name: the retrain keys that are comparison axes, not settings
# (collect.AXES), less the budget (an axis of its own: a budget sweep varies it) and the report's
# styles (they change no result). Two jobs that differ in one are different strategies. Every
# other retrain key that varies (finetune_lr) makes a setting of its own: those are told apart.
IDENTITY_KEYS = tuple(k for k in STRATEGY_KEYS if k != "strategy" and k not in STYLE_KEYS)


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
        named = g & out["retrain.short"].notna()  # without one, the arm's name is its short name
        out.loc[named, "retrain.short"] = SHORT_PREFIX + out.loc[named, "retrain.short"].astype(str)
    if "retrain.color" in out:
        out["retrain.color"] = out["retrain.color"].astype(object)
        out.loc[g, "retrain.color"] = None  # the next free color of the palette
    if "prune.schedule" in out:
        out.loc[g, "prune.schedule"] = "iterative"  # the levels it shares with them
    return out.drop(columns=[c for c in ("prune.every",) if c in out])


def _text(value: object) -> str | None:
    """A config value as the checks compare it; None where the job's config does not say."""
    return None if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) else str(value)


def check_arms(df: pd.DataFrame, tuned: tuple[str, ...] = ()) -> None:
    """ConfigError if two jobs of ``df`` (gradual_arms' output: rows with ``job``, ``strategy`` and
    the jobs' ``retrain.*`` values) have one strategy name but differ in an IDENTITY_KEYS value
    (but the ``tuned`` keys a tuning sweep searched: report/tuning.py), or two strategy names
    have one short name (``retrain.short``; without it, the name)."""
    keys = [f"retrain.{k}" for k in IDENTITY_KEYS]
    nested = [c for c in df.columns if c.startswith(tuple(f"{k}." for k in keys))]  # lr_rule's arguments
    cols = [c for c in [*keys, *nested] if c in df and c not in tuned]
    jobs = df.drop_duplicates("job").to_dict("records")
    first: dict[tuple[str, str], tuple[str, str]] = {}  # (name, key) -> the first job that says, its value
    for job in jobs:
        for col in cols:
            value, seen = _text(job[col]), first.get((str(job["strategy"]), col))
            if value is None:
                continue
            if seen is None:
                first[(str(job["strategy"]), col)] = (str(job["job"]), value)
            elif seen[1] != value:
                _refuse_name(str(job["strategy"]), next(j for j in jobs if str(j["job"]) == seen[0]), job, cols)
    shorts: dict[str, str] = {}  # short name -> the first strategy with it
    for job in jobs:
        name = str(job["strategy"])
        short = _text(job.get("retrain.short")) or name
        if shorts.setdefault(short, name) != name:
            raise ConfigError(
                f"the strategies {shorts[short]!r} and {name!r} have one short name {short!r} "
                "(retrain.short; a strategy without one goes by its name): the report would merge their paired "
                "differences; allowed: a short name of its own for each strategy"
            )


def _refuse_name(name: str, a: dict, b: dict, cols: list[str]) -> None:
    """ConfigError: jobs ``a`` and ``b`` give ``name`` to different strategies (the keys they differ in)."""
    differ = [c for c in cols if None not in (_text(a[c]), _text(b[c])) and _text(a[c]) != _text(b[c])]
    a_has, b_has = (", ".join(f"{c}={_text(job[c])}" for c in differ) for job in (a, b))
    raise ConfigError(
        f"two jobs of the sweep give the strategy name {name!r} to different strategies: job {a['job']} has "
        f"{a_has}, job {b['job']} has {b_has}; allowed: one strategy config per name: give one of them its own "
        "`strategy:` name (retrain.strategy), and its own `short:`"
    )
