"""A tuning sweep in the report (report/tuning.py): each strategy's trials reduced to the one
with the best val, every trial's retraining counted in its search cost, the tuned keys neither
settings nor a reason to refuse one strategy name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from prune_exp.errors import ConfigError
from prune_exp.report.arms import check_arms
from prune_exp.report.collect import setting_columns
from prune_exp.report.tables import with_setting
from prune_exp.report.tuning import TRIALS, chosen_trials, tuned_keys
from prune_exp.store.files import TUNING_FILE

PEAKS = (0.01, 0.05, 0.2)
VAL = {  # (strategy, peak): the val acc of seeds 0 and 1 after the last round
    ("llr", 0.01): (0.80, 0.82),
    ("llr", 0.05): (0.90, 0.86),  # best mean: 0.88
    ("llr", 0.2): (0.95, 0.79),  # best seed, worse mean: 0.87
    ("clr", 0.01): (0.70, 0.70),
    ("clr", 0.05): (0.71, 0.70),
    ("clr", 0.2): (0.72, 0.72),  # best
}


def records() -> pd.DataFrame:
    rows = []
    for n, ((strategy, peak), vals) in enumerate(VAL.items()):
        for seed, val in enumerate(vals):
            job = {"job": f"{n}-{seed}", "strategy": strategy, "seed": seed, "budget": 2, "retrain.lr_peak": peak}
            for r, epochs in ((0, 10), (1, 12), (2, 14)):  # 10 dense epochs, then 2 per round
                rows.append(
                    {**job, "round": r, "val_acc": val - 0.1 * (2 - r), "cum_epochs": epochs, "dense_epochs": 10}
                )
    return pd.DataFrame(rows)


def test_each_strategy_gets_its_best_trial_on_val_and_pays_for_every_trial() -> None:
    df = records()
    tuned = ("retrain.lr_peak",)
    ft = df.rename(columns={"retrain.lr_peak": "retrain.finetune_lr"})  # a shared key: else a setting
    assert setting_columns(ft, ("retrain.finetune_lr",)) == [] and setting_columns(ft) == ["retrain.finetune_lr"]
    with pytest.raises(ConfigError, match="give the strategy name 'llr' to different strategies"):
        check_arms(df)  # a strategy's own key: two peaks are two strategies ...
    check_arms(df, tuned)  # ... unless a tuning sweep searched it
    chosen = chosen_trials(with_setting(df, []), tuned, "val_acc", higher=True)
    picks = chosen.drop_duplicates(["strategy", "seed"]).set_index(["strategy", "seed"])["retrain.lr_peak"]
    assert picks.to_dict() == {("llr", 0): 0.05, ("llr", 1): 0.05, ("clr", 0): 0.2, ("clr", 1): 0.2}
    assert set(chosen[TRIALS]) == {3}
    # search cost: the dense stage once, plus all 3 trials' retraining up to the round
    by_round = chosen[chosen["strategy"] == "llr"].groupby("round")["cum_epochs"].first().to_dict()
    assert by_round == {0: 10, 1: 10 + 3 * 2, 2: 10 + 3 * 4}
    lower = chosen_trials(with_setting(df, []), tuned, "val_acc", higher=False)
    assert set(lower[lower["strategy"] == "llr"]["retrain.lr_peak"]) == {0.01}


def test_a_trial_that_stopped_early_is_not_chosen_but_is_paid_for() -> None:
    """A diverged trial keeps only its dense row, whose val is the best of all: not a candidate."""
    df = records()
    failed = {"job": "x-0", "strategy": "llr", "seed": 0, "budget": 2, "retrain.lr_peak": 2.0, "dense_epochs": 10}
    df = pd.concat([df, pd.DataFrame([{**failed, "round": 0, "val_acc": 0.99, "cum_epochs": 10}])])
    df["job_state"] = ["failed" if j == "x-0" else "done" for j in df["job"]]
    chosen = chosen_trials(with_setting(df, []), ("retrain.lr_peak",), "val_acc", higher=True)
    assert set(chosen[chosen["strategy"] == "llr"]["retrain.lr_peak"]) == {0.05}
    assert set(chosen[chosen["strategy"] == "llr"][TRIALS]) == {4}  # the failed one counted


def test_the_tuned_keys_are_the_sweepers_best_params_or_what_its_trials_vary(tmp_path: Path) -> None:
    assert tuned_keys(tmp_path) == ()
    (tmp_path / TUNING_FILE).write_text(yaml.safe_dump({"name": "optuna", "best_params": {"retrain.lr_peak": 0.05}}))
    assert tuned_keys(tmp_path) == ("retrain.lr_peak",)
    nevergrad = {"name": "nevergrad", "best_evaluated_params": {"retrain.finetune_lr": 0.01}}
    (tmp_path / TUNING_FILE).write_text(yaml.safe_dump(nevergrad))
    assert tuned_keys(tmp_path) == ("retrain.finetune_lr",)
    # before the file exists (a sweep still running, or with a failed trial): an optimizing
    # sweeper's trials, told apart by the override keys whose values differ (but the seed)
    (tmp_path / TUNING_FILE).unlink()
    results = pd.DataFrame(
        {"job": ["0", "1"], "overrides": [["retrain.lr_peak=0.1", "seed=0"], ["retrain.lr_peak=0.3", "seed=1"]]}
    )
    assert tuned_keys(tmp_path, results) == ()  # no multirun.yaml: not known to be a tuning sweep
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"sweeper": {"direction": "maximize"}}}))
    assert tuned_keys(tmp_path, results) == ("retrain.lr_peak",)
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"sweeper": {"max_batch_size": None}}}))
    assert tuned_keys(tmp_path, results) == ()  # the basic sweeper: its axes are no search
