"""A tuning sweep (hydra/sweeper=tune, or any sweeper that writes ``optimization_results.yaml``
with the keys it searched): each strategy's trials reduced to the one chosen on val, as the
sweeper chose, with every trial's retraining counted in that model's search cost.

The trials differ only in the tuned keys, so without this each trial would be a setting of its
own. The choice is the report's own, on the jobs' value (the final round's val select metric,
mean over the seeds a trial ran), so a sweep that is still running or was reported elsewhere
is reduced the same way; the sweeper's file only says which keys were tuned.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from prune_exp.report.tables import COSTS
from prune_exp.store.files import TUNING_FILE

TRIALS = "tuning_trials"  # the column: how many trials the chosen one was picked from


def tuned_keys(sweep_dir: Path) -> tuple[str, ...]:
    """The config keys a tuning sweeper searched (its result file's best_params), else ()."""
    path = Path(sweep_dir) / TUNING_FILE
    if not path.is_file():
        return ()
    try:
        best = (yaml.safe_load(path.read_text()) or {}).get("best_params") or {}
    except yaml.YAMLError:
        return ()
    return tuple(str(k) for k in best)


def chosen_trials(df: pd.DataFrame, tuned: tuple[str, ...], select: str, higher: bool) -> pd.DataFrame:
    """Per setting and strategy, the rows of the trial (its values of ``tuned``) with the best
    mean over seeds of its jobs' last val ``select``; its cumulative costs replaced by the dense
    stage plus every trial's retraining up to the same round; ``TRIALS`` columns counts them."""
    keys = [k for k in tuned if k in df]
    if not keys:
        return df
    d = df.copy()
    d["_trial"] = d[keys].astype(str).agg("|".join, axis=1)
    last = d.sort_values("round").groupby("job").tail(1)
    score = last.groupby(["setting", "strategy", "_trial"])[select].mean()
    best = (score.groupby(level=[0, 1]).idxmax() if higher else score.groupby(level=[0, 1]).idxmin()).tolist()
    trials = score.groupby(level=[0, 1]).size()
    out = d[d.set_index(["setting", "strategy", "_trial"]).index.isin(best)].copy()
    for cum, dense in COSTS.values():
        if cum in d and dense in d:
            spent = (d[cum] - d[dense]).groupby([d["setting"], d["strategy"], d["seed"], d["round"]]).sum()
            idx = pd.MultiIndex.from_frame(out[["setting", "strategy", "seed", "round"]])
            out[cum] = out[dense].to_numpy() + spent.reindex(idx).to_numpy()
    out[TRIALS] = [int(trials[(s, st)]) for s, st in zip(out["setting"], out["strategy"], strict=True)]
    return out.drop(columns="_trial")


def tuning_lines(chosen: pd.DataFrame, tuned: tuple[str, ...]) -> list[str]:
    """The summary's lines on a tuning sweep: what was searched, what each strategy got."""
    if not tuned or TRIALS not in chosen:
        return []
    picks = chosen.drop_duplicates(["setting", "strategy"])
    got = "; ".join(
        f"{r['strategy']}: " + ", ".join(f"{k}={r[k]}" for k in tuned if k in r) + f" (of {int(r[TRIALS])} trials)"
        for _, r in picks.iterrows()
    )
    return [
        f"Tuning sweep over {', '.join(tuned)} ({TUNING_FILE}): the tables show each strategy's trial with the "
        f"best val (mean over its seeds), and its search cost counts every trial's retraining. Chosen: {got}.",
        "",
    ]
