"""The statistics of a sweep, as pure functions of its tidy results (one row per job x round).

Vocabulary: a *setting* is one combination of the config values that vary across the sweep
and are not comparison axes (see collect.setting_columns); a *level* is a target sparsity
(``target_sparsity``; 0 is the dense model). When a setting has several retraining budgets,
the budget of every (strategy, level) is chosen on the validation metric (mean over seeds;
ties go to the shorter budget) and the test metric is reported for that budget only.

Like is compared with like (docs/reports.md, "The statistics"): a median over seeds
with the dense model's median over seeds, or each seed with its own dense model. Whether a
value is as good as another is decided in one place, ``at_least``: every function that
compares takes the metric's direction (``higher_is_better``; report/metric.py reads it from
the records), so a metric where lower is better (a loss, MSE) needs nothing else.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prune_exp.errors import ConfigError

LEVEL = "target_sparsity"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # a fixed RNG: the same records give the same report, intervals included


def with_setting(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Add a ``setting`` column: 'key=value, ...' over ``cols``, or 'all' when nothing varies."""
    out = df.copy()
    if cols:
        out["setting"] = out[cols].astype(str).apply(lambda r: ", ".join(f"{c}={v}" for c, v in r.items()), axis=1)
    else:
        out["setting"] = "all"
    return out


def pairs(strategies: list[str], baseline: str | None = None) -> list[tuple[str, str]]:
    """The (a, b) to compare as a − b: each strategy against ``baseline`` when the sweep has it,
    else every pair, each later strategy against each earlier one."""
    if baseline in strategies:
        return [(s, baseline) for s in strategies if s != baseline]
    return [(b, a) for i, a in enumerate(strategies) for b in strategies[i + 1 :]]


def dense_by_seed(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The dense model's ``metric`` per (setting, seed), from the round-0 rows."""
    dense = df[df["round"] == 0].drop_duplicates(["setting", "seed"])
    return dense[["setting", "seed", metric]].rename(columns={metric: "dense"})


def choose_budgets(df: pd.DataFrame, select: str, higher_is_better: bool = True) -> pd.DataFrame:
    """Rows after pruning (round > 0) whose budget is the one chosen on ``select`` for their
    (setting, strategy, level); a ``budgets`` column says how many there were to choose from.
    Records without ``select`` (data.val_fraction=0: no val split) have nothing to choose on:
    ConfigError unless every cell has one budget."""
    pruned = df[df["round"] > 0]
    keys = ["setting", "strategy", LEVEL]
    if select not in pruned:
        counts = pruned.groupby(keys)["budget"].nunique()
        if (counts > 1).any():
            setting, strategy, level = counts[counts > 1].index[0]
            raise ConfigError(
                f"the records have no {select} (no val split: data.val_fraction=0), so nothing chooses among "
                f"{strategy}'s budgets at sparsity {level:g} ({setting}); allowed: one retrain.budget per "
                "strategy, or data.val_fraction > 0"
            )
        return pruned.assign(budgets=1)
    means = pruned.groupby([*keys, "budget"], as_index=False)[select].mean()
    means["budgets"] = means.groupby(keys)["budget"].transform("count")
    best = means.sort_values([*keys, select, "budget"], ascending=[True, True, True, not higher_is_better, True])
    best = best.drop_duplicates(keys)[[*keys, "budget", "budgets"]]
    return pruned.merge(best, on=[*keys, "budget"])


def at_least(x, ref, higher_is_better: bool = True):
    """Whether ``x`` is at least as good as ``ref`` (elementwise): >= for accuracy, <= for a loss."""
    return x >= ref if higher_is_better else x <= ref


def cell_stats(chosen: pd.DataFrame, dense: pd.DataFrame, metric: str, higher_is_better: bool = True) -> pd.DataFrame:
    """Per (setting, level, strategy): n, mean, std, median, min, max of ``metric`` over seeds,
    the mean compression and sparsity, the chosen budget, ``delta``: the mean over seeds of
    (metric - the same seed's dense metric), and ``at_dense``: how many seeds are at least as
    good as their own seed's dense model."""
    d = chosen.merge(dense, on=["setting", "seed"], how="left")
    d["diff"] = d[metric] - d["dense"]
    d["at_dense"] = at_least(d[metric], d["dense"], higher_is_better) & d["dense"].notna()
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
            "at_dense": g["at_dense"].sum().astype(int),
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


def bootstrap_ci(
    values, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement, a
    fresh ``default_rng(seed)`` per call); None for fewer than two values: one has no spread."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    lo, hi = np.quantile(x[idx].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired(chosen: pd.DataFrame, a: str, b: str, metric: str, higher_is_better: bool = True) -> pd.DataFrame:
    """Per (setting, level): ``a`` - ``b`` over the seeds both have: n, mean difference, its 95%
    bootstrap interval over seeds (``ci_lo``, ``ci_hi``; NaN for one seed), and how many seeds
    went each way (``a_wins``: seeds where ``a`` was better, in the metric's direction)."""
    sign = 1 if higher_is_better else -1
    keys = ["setting", LEVEL, "seed"]
    left = chosen[chosen["strategy"] == a][[*keys, metric, "compression"]]
    right = chosen[chosen["strategy"] == b][[*keys, metric]]
    m = left.merge(right, on=keys, suffixes=("_a", "_b")).sort_values(keys)  # seed order: a fixed resample
    m["diff"] = m[f"{metric}_a"] - m[f"{metric}_b"]
    g = m.groupby(["setting", LEVEL])
    ci = g["diff"].apply(lambda x: bootstrap_ci(x.to_numpy()) or (np.nan, np.nan))
    return pd.DataFrame(
        {
            "n": g["diff"].count(),
            "mean_diff": g["diff"].mean(),
            "ci_lo": ci.map(lambda c: c[0]),
            "ci_hi": ci.map(lambda c: c[1]),
            "a_wins": g["diff"].apply(lambda x: int((sign * x > 0).sum())),
            "b_wins": g["diff"].apply(lambda x: int((sign * x < 0).sum())),
            "ties": g["diff"].apply(lambda x: int((x == 0).sum())),
            "compression": g["compression"].mean(),
        }
    )


def _largest(s: pd.DataFrame, ok: pd.Series, prefix: str = "") -> pd.DataFrame:
    """Per (setting, strategy) of the cells ``s``: the compression, sparsity and level of the
    most compressed cell where ``ok``; NaN where none is."""
    cols = ["compression", "sparsity", LEVEL]
    best = s[ok].sort_values("compression").groupby(["setting", "strategy"]).tail(1)
    best = best[["setting", "strategy", *cols]].rename(columns={c: prefix + c for c in cols})
    return s[["setting", "strategy"]].drop_duplicates().merge(best, on=["setting", "strategy"], how="left")


def largest_compression_at_dense(
    stats: pd.DataFrame, dense: pd.DataFrame, higher_is_better: bool = True
) -> pd.DataFrame:
    """Renda et al.'s headline, per (setting, strategy), two ways. ``compression``, ``sparsity``,
    ``target_sparsity``: the most compressed cell whose median over seeds is at least the dense
    model's median over seeds (``dense_median``). ``paired_compression``, ``paired_sparsity``,
    ``paired_target_sparsity``: the most compressed cell where most seeds (more than half of
    the cell's) are at least their own seed's dense model (``at_dense``: give cell_stats the same
    direction). NaN where no cell is."""
    s = stats.reset_index().merge(dense["median"].rename("dense_median").reset_index(), on="setting")
    by_median = _largest(s, at_least(s["median"], s["dense_median"], higher_is_better))
    by_seed = _largest(s, 2 * s["at_dense"] > s["n"], prefix="paired_")
    out = by_median.merge(by_seed, on=["setting", "strategy"])
    out = out.merge(s[["setting", "dense_median"]].drop_duplicates(), on="setting")
    return out.set_index(["setting", "strategy"])


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
