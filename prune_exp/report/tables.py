"""The statistics of a sweep, as pure functions of its tidy results (one row per job x round).

Vocabulary: a *setting* is one combination of the config values that vary across the sweep
and are not comparison axes (see collect.setting_columns); a *level* is a target sparsity
(``target_sparsity``; 0 is the dense model). When a setting has several retraining budgets,
the budget of every (strategy, level) is chosen on the validation metric (mean over seeds;
ties go to the shorter budget) and the test metric is reported for that budget only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STRATEGY_ORDER = ["finetune", "weight_rewind", "lr_rewind", "lottery", "reinit", "none"]
PAIRS = [("lr_rewind", "finetune"), ("weight_rewind", "finetune"), ("lr_rewind", "weight_rewind")]
LEVEL = "target_sparsity"


def with_setting(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Add a ``setting`` column: 'key=value, ...' over ``cols``, or 'all' when nothing varies."""
    out = df.copy()
    if cols:
        out["setting"] = out[cols].astype(str).apply(lambda r: ", ".join(f"{c}={v}" for c, v in r.items()), axis=1)
    else:
        out["setting"] = "all"
    return out


def ordered(strategies) -> list[str]:
    known = [s for s in STRATEGY_ORDER if s in set(strategies)]
    return known + sorted(set(strategies) - set(known))


def dense_by_seed(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The dense model's ``metric`` per (setting, seed), from the round-0 rows."""
    dense = df[df["round"] == 0].drop_duplicates(["setting", "seed"])
    return dense[["setting", "seed", metric]].rename(columns={metric: "dense"})


def choose_budgets(df: pd.DataFrame, select: str) -> pd.DataFrame:
    """Rows after pruning (round > 0) whose budget is the one chosen on ``select`` for their
    (setting, strategy, level); a ``budgets`` column says how many there were to choose from."""
    pruned = df[df["round"] > 0]
    keys = ["setting", "strategy", LEVEL]
    means = pruned.groupby([*keys, "budget"], as_index=False)[select].mean()
    means["budgets"] = means.groupby(keys)["budget"].transform("count")
    best = means.sort_values([*keys, select, "budget"], ascending=[True, True, True, False, True])
    best = best.drop_duplicates(keys)[[*keys, "budget", "budgets"]]
    return pruned.merge(best, on=[*keys, "budget"])


def cell_stats(chosen: pd.DataFrame, dense: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (setting, level, strategy): n, mean, std, median, min, max of ``metric`` over seeds,
    the mean compression and sparsity, the chosen budget, and ``delta``: the mean over seeds of
    (metric - the same seed's dense metric)."""
    d = chosen.merge(dense, on=["setting", "seed"], how="left")
    d["diff"] = d[metric] - d["dense"]
    g = d.groupby(["setting", LEVEL, "strategy"])
    return pd.DataFrame(
        {
            "n": g[metric].count(),
            "mean": g[metric].mean(),
            "std": g[metric].std(ddof=1),
            "median": g[metric].median(),
            "min": g[metric].min(),
            "max": g[metric].max(),
            "delta": g["diff"].mean(),
            "compression": g["compression"].mean(),
            "sparsity": g["sparsity"].mean(),
            "budget": g["budget"].first(),
            "budgets": g["budgets"].first(),
        }
    )


def dense_stats(dense: pd.DataFrame) -> pd.DataFrame:
    """Per setting: n, mean, std, median, min, max of the dense metric over seeds."""
    g = dense.groupby("setting")["dense"]
    return pd.DataFrame(
        {"n": g.count(), "mean": g.mean(), "std": g.std(ddof=1), "median": g.median(), "min": g.min(), "max": g.max()}
    )


def paired(chosen: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """Per (setting, level): ``a`` - ``b`` over the seeds both have: n, mean difference, and how
    many seeds went each way."""
    keys = ["setting", LEVEL, "seed"]
    left = chosen[chosen["strategy"] == a][[*keys, metric, "compression"]]
    right = chosen[chosen["strategy"] == b][[*keys, metric]]
    m = left.merge(right, on=keys, suffixes=("_a", "_b"))
    m["diff"] = m[f"{metric}_a"] - m[f"{metric}_b"]
    g = m.groupby(["setting", LEVEL])
    return pd.DataFrame(
        {
            "n": g["diff"].count(),
            "mean_diff": g["diff"].mean(),
            "a_wins": g["diff"].apply(lambda x: int((x > 0).sum())),
            "b_wins": g["diff"].apply(lambda x: int((x < 0).sum())),
            "ties": g["diff"].apply(lambda x: int((x == 0).sum())),
            "compression": g["compression"].mean(),
        }
    )


def largest_compression_at_dense(stats: pd.DataFrame, dense: pd.DataFrame) -> pd.DataFrame:
    """Renda et al.'s headline: per (setting, strategy), the largest compression ratio at which
    the median over seeds is at or above the dense model's mean; NaN if it never is."""
    s = stats.reset_index().merge(dense["mean"].rename("dense_mean").reset_index(), on="setting")
    ok = s[s["median"] >= s["dense_mean"]]
    best = ok.sort_values("compression").groupby(["setting", "strategy"]).tail(1)
    out = (
        s[["setting", "strategy"]]
        .drop_duplicates()
        .merge(best[["setting", "strategy", "compression", "sparsity", LEVEL]], on=["setting", "strategy"], how="left")
    )
    return out.set_index(["setting", "strategy"])


def pct(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.2f}"


def mean_std_n(mean: float, std: float, n: int) -> str:
    """'94.17 ± 0.35 (3)' in percent; a single value has no spread: '94.17 (1)'."""
    return f"{pct(mean)} ({n})" if n < 2 else f"{pct(mean)} ± {pct(std)} ({n})"


def signed_pp(x: float) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:+.2f}"


# ------------------------------------------------------------------ search cost
# What it cost to find a pruned model: the dense stage (trained once per seed and shared by
# every strategy through the cache) plus every retraining round up to the model's level.
# cost -> (the record's cumulative column, dense stage included; the dense stage's column)
COSTS = {
    "epochs": ("cum_epochs", "dense_epochs"),
    "train_flops": ("cum_train_flops", "dense_train_flops"),
    "seconds": ("cum_seconds", "dense_seconds"),
}


def available_costs(df: pd.DataFrame) -> list[str]:
    """The costs of ``COSTS`` every row of ``df`` has (records written before the FLOPs were
    counted have no *_flops columns; a sweep mixing old and new jobs has them only in part)."""
    return [k for k, cols in COSTS.items() if all(c in df and df[c].notna().all() for c in cols)]


def cost_axis(df: pd.DataFrame) -> str | None:
    """The cost to plot against: training FLOPs where recorded, else epochs, else None."""
    costs = available_costs(df)
    return next((c for c in ("train_flops", "epochs") if c in costs), None)


def dense_costs(df: pd.DataFrame, costs: list[str]) -> pd.DataFrame:
    """Per setting: the dense stage's ``costs``, median over seeds. One round-0 row per
    (setting, seed): the dense stage is counted once, however many jobs share it."""
    dense = df[df["round"] == 0].drop_duplicates(["setting", "seed"])
    g = dense.groupby("setting")
    out = pd.DataFrame({"n": g["seed"].count()})
    for cost in costs:
        out[cost] = g[COSTS[cost][1]].median()
    return out


def search_costs(df: pd.DataFrame, metric: str, costs: list[str]) -> pd.DataFrame:
    """Per (setting, strategy, budget, level) after pruning, over seeds: n; median, min, max of
    ``metric``; the mean compression and sparsity; and per cost the median of ``cum_<cost>``
    (dense stage + every retraining round up to the level) and of ``retrain_<cost>`` (the
    retraining rounds alone: cumulative minus the job's dense stage)."""
    d = df[df["round"] > 0].copy()
    for cost in costs:
        cum, dense = COSTS[cost]
        d[f"cum_{cost}"] = d[cum]
        d[f"retrain_{cost}"] = d[cum] - d[dense]
    g = d.groupby(["setting", "strategy", "budget", LEVEL])
    out = pd.DataFrame(
        {
            "n": g[metric].count(),
            "median": g[metric].median(),
            "min": g[metric].min(),
            "max": g[metric].max(),
            "compression": g["compression"].mean(),
            "sparsity": g["sparsity"].mean(),
        }
    )
    for cost in costs:
        out[f"cum_{cost}"] = g[f"cum_{cost}"].median()
        out[f"retrain_{cost}"] = g[f"retrain_{cost}"].median()
    return out


def flops(x: float) -> str:
    """Training FLOPs in four significant digits: '7.200e+11'."""
    return "–" if x is None or np.isnan(x) else f"{x:.3e}"


def epochs(x: float) -> str:
    """Epochs as a number ('45'; a median over an even number of seeds may be '22.5')."""
    return "–" if x is None or np.isnan(x) else f"{x:g}"


def seconds(x: float) -> str:
    return "–" if x is None or np.isnan(x) else f"{x:.1f}"


COST_FORMAT = {"epochs": epochs, "train_flops": flops, "seconds": seconds}
COST_UNIT = {"epochs": "epochs", "train_flops": "training FLOPs", "seconds": "wall s"}
