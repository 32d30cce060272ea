"""Sweep dirs on disk: partial and empty sweeps, and the files a real multirun leaves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from report_helpers import job_rows, md_table, write_job, write_multirun_yaml

from prune_exp.report import report_sweep
from prune_exp.store.records import read_records


def test_a_partial_sweep_reports_what_is_there_and_lists_the_rest(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_multirun_yaml(sweep, ["retrain=finetune,lr_rewind", "seed=0,1"])
    write_job(sweep / "0", ["retrain=finetune", "seed=0"], job_rows("finetune", 0, 2), "done")
    write_job(sweep / "1", ["retrain=finetune", "seed=1"], job_rows("finetune", 1, 1), "failed")
    write_job(sweep / "2", ["retrain=lr_rewind", "seed=0"], job_rows("lr_rewind", 0, 1), "running")
    # job 3 (lr_rewind, seed 1) never started; nothing holds job 2's dir: it was killed
    printed = []
    result = report_sweep(sweep, out=printed.append)
    states = {" ".join(j.overrides): j.state for j in result.jobs}
    assert states == {
        "retrain=finetune seed=0": "done",
        "retrain=finetune seed=1": "failed",
        "retrain=lr_rewind seed=0": "killed",
        "retrain=lr_rewind seed=1": "missing",
    }
    summary = (sweep / "summary.md").read_text()
    assert "4 jobs: 1 done, 1 failed, 1 killed, 1 missing." in summary
    assert "RuntimeError: boom" in summary and "1 of 2 rounds recorded" in summary
    assert f"no live process holds the job dir; rerun the sweep command with hydra.sweep.dir={sweep}" in summary
    assert printed and "Sweep report" in printed[0]
    csv = pd.read_csv(sweep / "results.csv")
    assert len(csv) == 3 + 2 + 2 and set(csv["job_state"]) == {"done", "failed", "killed"}
    assert (sweep / "accuracy_vs_compression.png").stat().st_size > 10_000


def test_an_empty_sweep_dir_reports_cleanly(tmp_path: Path) -> None:
    from prune_exp.report.cli import main

    write_multirun_yaml(tmp_path, ["seed=0,1"])  # a sweep that has not started a job yet
    assert main([str(tmp_path)]) == 1
    assert "No job has written records yet" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_a_real_budget_sweep_writes_every_file(tmp_path: Path, data_dir: Path) -> None:
    from helpers import run_cli

    res = run_cli(
        [
            "-m",
            "experiment=budget_sweep",
            "seed=0",
            "prune.sparsity=0.5",
            "retrain.budget=1,3",
            f"paths.data_dir={data_dir}",
            "dense.epochs=3",
            "optim.schedule.milestones=[1,2]",
            "model.channels=[8,8,8]",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "budget_sweep" / "multiruns").iterdir())
    for name in (
        "results.csv",
        "summary.md",
        "accuracy_vs_compression.png",
        "accuracy_vs_compression.svg",
        "accuracy_vs_budget.png",
        "accuracy_vs_budget.svg",
        "layer_sparsity.png",
        "layer_sparsity.svg",
        "accuracy_vs_search_cost.png",
        "accuracy_vs_search_cost.svg",
    ):
        path = sweep / name
        assert path.stat().st_size > 1000, name
    assert (sweep / "accuracy_vs_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (sweep / "layer_sparsity.svg").read_bytes()[:500]
    csv = pd.read_csv(sweep / "results.csv")
    assert len(csv) == 6 * 2  # 3 strategies x 2 budgets, each dense + 1 round
    assert {"optim.lr", "model.channels", "retrain.budget", "prune.sparsity"} <= set(csv.columns)
    jobs = [read_records(p) for p in sweep.glob("*/records.jsonl")]
    assert len(jobs) == 6 and len({j[0]["dense_hash"] for j in jobs}) == 1
    summary = (sweep / "summary.md").read_text()
    assert "6 jobs: 6 done." in summary and "chosen on val_acc" in summary
    assert "LRR − FT" in summary and "Largest compression" in summary
    # the app counts training FLOPs: the search cost is in FLOPs, the dense stage (3 epochs) once
    (cost_row,) = [r for r in md_table(summary, "### Search cost") if r["sparsity %"].startswith("5")]
    assert summary.count("Dense stage, counted once") == 1 and "the cache): 3 epochs, " in summary
    dense_flops = csv.loc[csv["round"] == 0, "dense_train_flops"].iloc[0]
    for st in ("finetune", "weight_rewind", "lr_rewind"):
        t = int(cost_row[f"{st} t"])
        assert cost_row[f"{st} epochs"] == str(t)
        cum = csv[(csv["strategy"] == st) & (csv["budget"] == t) & (csv["round"] == 1) & (csv["target"] == 0.5)]
        assert cost_row[f"{st} FLOPs"] == f"{cum['cum_train_flops'].iloc[0] - dense_flops:.3e}"
