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
from prune_exp.store.files import MULTIRUN_FILE, TUNING_FILE

TRIALS = "tuning_trials"  # the column: how many trials the chosen one was picked from


def tuned_keys(sweep_dir: Path, results: pd.DataFrame | None = None) -> tuple[str, ...]:
    """The config keys a tuning sweeper searched: its result file's best parameters (Optuna's
    ``best_params``, Nevergrad's ``best_evaluated_params``); before that file exists (a sweep
    still running, or one whose trials failed), where ``multirun.yaml`` shows an optimizing
    sweeper (a ``direction`` or an ``optim``), the override keys whose values differ between
    the jobs of ``results`` (but the seed); else ()."""
    path = Path(sweep_dir) / TUNING_FILE
    if path.is_file():
        try:
            result = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            result = {}
        best = result.get("best_params") or result.get("best_evaluated_params") or {}
        if best:
            return tuple(str(k) for k in best)
    if results is None or "overrides" not in results or not _optimizing(Path(sweep_dir) / MULTIRUN_FILE):
        return ()
    values: dict[str, set[str]] = {}
    for overrides in results.drop_duplicates("job")["overrides"]:
        for o in overrides if isinstance(overrides, list) else []:
            key, _, value = str(o).partition("=")
            values.setdefault(key.lstrip("+~"), set()).add(value)
    return tuple(k for k, v in values.items() if len(v) > 1 and k != "seed" and "." in k)


def _optimizing(multirun: Path) -> bool:
    try:
        sweeper = ((yaml.safe_load(multirun.read_text()) or {}).get("hydra") or {}).get("sweeper") or {}
    except (OSError, yaml.YAMLError):
        return False
    return "direction" in sweeper or "optim" in sweeper


def chosen_trials(df: pd.DataFrame, tuned: tuple[str, ...], select: str, higher: bool) -> pd.DataFrame:
    """Per setting and strategy, the rows of the trial (its values of ``tuned``) with the best
    mean over seeds of its finished jobs' last val ``select`` (a job that stopped early is not
    scored: its last row is not its last round); its cumulative costs replaced by the dense
    stage plus every trial's retraining up to the same round; ``TRIALS`` counts the trials."""
    keys = [k for k in tuned if k in df]
    if not keys or select not in df:
        return df
    d = df.copy()
    d["_trial"] = d[keys].astype(str).agg("|".join, axis=1)
    last = d.sort_values("round").groupby("job").tail(1)
    if "job_state" in last:
        finished = last["job_state"] == "done"
    else:  # records without their job's state: complete when the last round is recorded
        finished = last["round"] == last["rounds"] if "rounds" in last else pd.Series(True, index=last.index)
    score = last[finished].groupby(["setting", "strategy", "_trial"])[select].mean().dropna()
    if score.empty:
        return df
    by_cell = score.groupby(level=[0, 1])
    best = (by_cell.idxmax() if higher else by_cell.idxmin()).tolist()
    trials = d.groupby(["setting", "strategy"])["_trial"].nunique()
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
