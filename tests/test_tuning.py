"""Tuning a strategy's LR on val with Optuna (hydra/sweeper=tune, the ``tune`` extra): the search
runs in the direction of the jobs' value, and a sweeper told the wrong direction is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import composed, run_cli
from report_helpers import md_table

pytestmark = pytest.mark.slow
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")


@pytest.mark.parametrize(
    ("overrides", "direction"),
    [
        ([], "maximize"),  # acc, the task's first metric
        (["select_metric=loss"], "minimize"),
        (["experiment=compare_regression"], "minimize"),  # mse
        (["experiment=compare_regression", "select_metric=r2"], "maximize"),
    ],
)
def test_the_tune_sweeper_follows_the_select_metrics_direction(overrides: list[str], direction: str) -> None:
    with composed(["hydra/sweeper=tune", *overrides], hydra=True) as cfg:
        assert cfg.hydra.sweeper.direction == direction


def tune(tmp_path: Path, *args: str):
    return run_cli(["-m", *args, "debug=fast", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)


def test_a_tuning_sweep_searches_the_lr_and_keeps_the_best_trial_on_val(tmp_path: Path) -> None:
    # on the val loss, which differs between any two LRs (debug=fast's acc is often 1.0 for all)
    lrs = "retrain.finetune_lr=tag(log, interval(1e-4, 0.5))"
    res = tune(
        tmp_path, "hydra/sweeper=tune", "hydra.sweeper.n_trials=3", "select_metric=loss", "retrain=finetune", lrs
    )
    assert res.returncode == 0, res.stderr[-3000:]
    sweep, values = tmp_path / "sweep", {}
    for n in range(3):
        status = json.loads((sweep / str(n) / "status.json").read_text())
        lr = float(next(o for o in status["overrides"] if o.startswith("retrain.finetune_lr=")).split("=")[1])
        assert status["state"] == "done" and 1e-4 <= lr <= 0.5
        values[lr] = status["value"]
    assert len(set(values.values())) == 3
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == min(values.values())  # minimized: a loss
    assert values[best["best_params"]["retrain.finetune_lr"]] == best["best_value"]
    # the report: one setting, the trial chosen on val, every trial's retraining in its search cost
    summary = (sweep / "summary.md").read_text()
    assert "## Setting" not in summary
    chosen = f"finetune: retrain.finetune_lr={best['best_params']['retrain.finetune_lr']} (of 3 trials)"
    assert "Tuning sweep over retrain.finetune_lr (optimization_results.yaml)" in summary and chosen in summary
    cost = md_table(summary, "### Search cost")
    assert [row["finetune epochs"] for row in cost] == ["3"]  # 3 trials x 1 round of debug=fast's 1 epoch


def test_a_sweeper_told_to_minimize_acc_is_refused_before_anything_runs(tmp_path: Path) -> None:
    res = tune(tmp_path, "hydra/sweeper=optuna", "retrain.finetune_lr=interval(1e-4, 0.1)")
    assert res.returncode == 1  # as every refusal of the preflight
    assert "hydra.sweeper.direction=minimize is not allowed; allowed: maximize: a job's value is its final val acc" in (
        res.stderr
    )
    assert not (tmp_path / "sweep").exists()


def test_a_tuning_sweep_on_a_metric_the_task_lacks_is_refused_in_one_line(tmp_path: Path) -> None:
    res = tune(tmp_path, "hydra/sweeper=tune", "select_metric=acuracy", "retrain.finetune_lr=interval(1e-4, 0.1)")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == (
        "prune-exp: config error: select_metric='acuracy' is not allowed; allowed: one of acc, f1_macro, acc_top5, loss"
    )
    assert not (tmp_path / "sweep").exists()
