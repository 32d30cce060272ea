"""Sweep reports: statistics against independent computations, the headline rule, partial
sweeps, and the files a real multirun leaves."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from prune_exp.records import read_records
from prune_exp.report import report_sweep
from prune_exp.report.tables import (
    cell_stats,
    choose_budgets,
    dense_by_seed,
    dense_stats,
    largest_compression_at_dense,
    paired,
    with_setting,
)

SEEDS = [0, 1, 2]
STRATS = ["finetune", "weight_rewind", "lr_rewind"]
LEVELS = {0.5: 2.0, 0.75: 4.0}  # target sparsity -> compression
BUDGETS = [2, 4]


def hand_made(rng_seed: int = 0) -> pd.DataFrame:
    """Records of a sweep: 3 strategies x 2 budgets x 3 seeds, dense + 2 rounds each."""
    rng = np.random.default_rng(rng_seed)
    dense = {0: 0.90, 1: 0.92, 2: 0.94}
    rows = []
    for strat in STRATS:
        for t in BUDGETS:
            for seed in SEEDS:
                rows.append(
                    {
                        "round": 0,
                        "target_sparsity": 0.0,
                        "strategy": strat,
                        "budget": t,
                        "seed": seed,
                        "test_acc": dense[seed],
                        "val_acc": dense[seed],
                        "compression": 1.0,
                        "sparsity": 0.0,
                    }
                )
                for r, (level, comp) in enumerate(LEVELS.items(), start=1):
                    rows.append(
                        {
                            "round": r,
                            "target_sparsity": level,
                            "strategy": strat,
                            "budget": t,
                            "seed": seed,
                            "test_acc": round(float(rng.uniform(0.8, 0.95)), 3),
                            "val_acc": round(float(rng.uniform(0.8, 0.95)), 3),
                            "compression": comp,
                            "sparsity": level,
                        }
                    )
    return with_setting(pd.DataFrame(rows), [])


def test_cell_statistics_match_an_independent_computation() -> None:
    df = hand_made()
    dense = dense_by_seed(df, "test_acc")
    stats = cell_stats(choose_budgets(df, "val_acc"), dense, "test_acc")
    records = df.to_dict("records")
    dense_acc = {r["seed"]: r["test_acc"] for r in records if r["round"] == 0}
    for strat in STRATS:
        for level in LEVELS:

            def rows(t, strat=strat, level=level):
                return [
                    r for r in records if r["strategy"] == strat and r["target_sparsity"] == level and r["budget"] == t
                ]

            val_means = {t: sum(r["val_acc"] for r in rows(t)) / len(SEEDS) for t in BUDGETS}
            best = max(BUDGETS, key=lambda t: (val_means[t], -t))
            test = [r["test_acc"] for r in sorted(rows(best), key=lambda r: r["seed"])]
            cell = stats.loc[("all", level, strat)]
            assert cell["budget"] == best and cell["n"] == 3 and cell["budgets"] == 2
            assert cell["mean"] == pytest.approx(statistics.mean(test))
            assert cell["std"] == pytest.approx(statistics.stdev(test))
            assert cell["median"] == pytest.approx(statistics.median(test))
            assert (cell["min"], cell["max"]) == (min(test), max(test))
            assert cell["delta"] == pytest.approx(
                statistics.mean(a - dense_acc[s] for s, a in zip(SEEDS, test, strict=True))
            )
            assert cell["compression"] == LEVELS[level]
    d = dense_stats(dense).loc["all"]
    assert (d["n"], d["mean"], d["std"]) == (3, pytest.approx(0.92), pytest.approx(0.02))


def test_budget_ties_go_to_the_shorter_budget() -> None:
    df = hand_made()
    df.loc[df["round"] > 0, "val_acc"] = 0.9  # every budget ties on validation
    chosen = choose_budgets(df, "val_acc")
    assert set(chosen["budget"]) == {2}


def test_paired_differences_match_an_independent_computation() -> None:
    df = hand_made(rng_seed=3)
    chosen = choose_budgets(df, "val_acc")
    p = paired(chosen, "lr_rewind", "finetune", "test_acc")
    for level in LEVELS:

        def acc(strat, seed, level=level):
            r = chosen[(chosen.strategy == strat) & (chosen.seed == seed) & (chosen.target_sparsity == level)]
            return float(r["test_acc"].iloc[0])

        diffs = [acc("lr_rewind", s) - acc("finetune", s) for s in SEEDS]
        row = p.loc[("all", level)]
        assert row["mean_diff"] == pytest.approx(statistics.mean(diffs))
        assert (row["a_wins"], row["b_wins"], row["ties"]) == (
            sum(x > 0 for x in diffs),
            sum(x < 0 for x in diffs),
            sum(x == 0 for x in diffs),
        )


def headline_records() -> pd.DataFrame:
    """Dense accuracies 0.5, 0.75, 1.0 (mean 0.75, exactly representable). Medians per level:
    FT: 0.8 @2x, 0.7 @4x, 0.75 @8x (equal counts), 0.5 @16x      -> largest: 8x
    WR: 0.74 everywhere                                            -> never
    LRR: 0.9 @2x, 0.9 @4x, 0.9 @8x, 0.76 @16x                      -> largest: 16x"""
    medians = {"finetune": [0.8, 0.7, 0.75, 0.5], "weight_rewind": [0.74] * 4, "lr_rewind": [0.9, 0.9, 0.9, 0.76]}
    comps = [2.0, 4.0, 8.0, 16.0]
    rows = []
    for strat, meds in medians.items():
        for seed, dense in zip(SEEDS, [0.5, 0.75, 1.0], strict=True):
            rows.append(
                {
                    "round": 0,
                    "target_sparsity": 0.0,
                    "strategy": strat,
                    "budget": 1,
                    "seed": seed,
                    "test_acc": dense,
                    "val_acc": dense,
                    "compression": 1.0,
                    "sparsity": 0.0,
                }
            )
            for r, (m, c) in enumerate(zip(meds, comps, strict=True), start=1):
                spread = {0: -0.05, 1: 0.0, 2: 0.05}[seed]  # the median is the seed-1 value
                rows.append(
                    {
                        "round": r,
                        "target_sparsity": 1 - 1 / c,
                        "strategy": strat,
                        "budget": 1,
                        "seed": seed,
                        "test_acc": m + spread,
                        "val_acc": m,
                        "compression": c,
                        "sparsity": 1 - 1 / c,
                    }
                )
    return with_setting(pd.DataFrame(rows), [])


def test_largest_compression_at_or_above_dense_on_known_records() -> None:
    df = headline_records()
    dense = dense_by_seed(df, "test_acc")
    stats = cell_stats(choose_budgets(df, "val_acc"), dense, "test_acc")
    h = largest_compression_at_dense(stats, dense_stats(dense))
    assert h.loc[("all", "finetune"), "compression"] == 8.0
    assert np.isnan(h.loc[("all", "weight_rewind"), "compression"])
    assert h.loc[("all", "lr_rewind"), "compression"] == 16.0


# ------------------------------------------------------------------ sweep dirs on disk
def write_job(job_dir: Path, overrides: list[str], rows: list[dict], state: str | None) -> None:
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job_dir / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"seed": rows[0]["seed"] if rows else 0, "retrain": {"strategy": "x"}})
    )
    if rows:
        (job_dir / "records.jsonl").write_text(
            "".join(pd.Series([r]).to_json(orient="records")[1:-1] + "\n" for r in rows)
        )
    if state:
        (job_dir / "status.json").write_text(f'{{"state": "{state}", "error": "RuntimeError: boom"}}')


def job_rows(strategy: str, seed: int, upto: int) -> list[dict]:
    base = {
        "strategy": strategy,
        "seed": seed,
        "budget": 2,
        "rounds": 2,
        "select_metric": "acc",
        "target": 0.75,
        "job_dir": "x",
        "dense_hash": "h",
    }
    levels = [(0.0, 1.0), (0.5, 2.0), (0.75, 4.0)]
    return [
        {
            **base,
            "round": r,
            "target_sparsity": lv,
            "sparsity": lv,
            "compression": c,
            "test_acc": 0.9 - 0.01 * r,
            "val_acc": 0.9 - 0.01 * r,
        }
        for r, (lv, c) in enumerate(levels[: upto + 1])
    ]


def test_a_partial_sweep_reports_what_is_there_and_lists_the_rest(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "hydra": {
                    "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
                    "overrides": {"task": ["retrain=finetune,lr_rewind", "seed=0,1"]},
                }
            }
        )
    )
    write_job(sweep / "0", ["retrain=finetune", "seed=0"], job_rows("finetune", 0, 2), "done")
    write_job(sweep / "1", ["retrain=finetune", "seed=1"], job_rows("finetune", 1, 1), "failed")
    write_job(sweep / "2", ["retrain=lr_rewind", "seed=0"], job_rows("lr_rewind", 0, 1), "running")
    # job 3 (lr_rewind, seed 1) never started
    printed = []
    result = report_sweep(sweep, out=printed.append)
    states = {" ".join(j.overrides): j.state for j in result.jobs}
    assert states == {
        "retrain=finetune seed=0": "done",
        "retrain=finetune seed=1": "failed",
        "retrain=lr_rewind seed=0": "running or killed",
        "retrain=lr_rewind seed=1": "missing",
    }
    summary = (sweep / "summary.md").read_text()
    assert "4 jobs: 1 done, 1 failed, 1 running or killed, 1 missing." in summary
    assert "RuntimeError: boom" in summary and "1 of 2 rounds recorded" in summary
    assert printed and "Sweep report" in printed[0]
    csv = pd.read_csv(sweep / "results.csv")
    assert len(csv) == 3 + 2 + 2 and set(csv["job_state"]) == {"done", "failed", "running or killed"}
    assert (sweep / "accuracy_vs_compression.png").stat().st_size > 10_000


def test_an_empty_sweep_dir_reports_cleanly(tmp_path: Path) -> None:
    from prune_exp.report.cli import main

    assert main([str(tmp_path)]) == 1
    assert "No job has written records yet" in (tmp_path / "summary.md").read_text()


# ------------------------------------------------------------------ real multiruns
@pytest.mark.slow
def test_a_real_budget_sweep_writes_every_file(tmp_path: Path, data_dir: Path) -> None:
    from helpers import run_cli

    res = run_cli(
        [
            "-m",
            "experiment=budget_sweep",
            "seed=0",
            "prune.sparsity=0.5,0.8",
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
    ):
        path = sweep / name
        assert path.stat().st_size > 1000, name
    assert (sweep / "accuracy_vs_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (sweep / "layer_sparsity.svg").read_bytes()[:500]
    csv = pd.read_csv(sweep / "results.csv")
    assert len(csv) == 12 * 2  # 3 strategies x 2 sparsities x 2 budgets, each dense + 1 round
    assert {"optim.lr", "model.channels", "retrain.budget", "prune.sparsity"} <= set(csv.columns)
    jobs = [read_records(p) for p in sweep.glob("*/records.jsonl")]
    assert len(jobs) == 12 and len({j[0]["dense_hash"] for j in jobs}) == 1
    summary = (sweep / "summary.md").read_text()
    assert "12 jobs: 12 done." in summary and "chosen on val_acc" in summary
    assert "LRR − FT" in summary and "Largest compression" in summary
