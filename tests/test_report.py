"""Sweep reports: statistics against independent computations, the headline rule, partial
sweeps, and the files a real multirun leaves."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from prune_exp.errors import ConfigError
from prune_exp.records import read_records
from prune_exp.report import report_sweep
from prune_exp.report.cli import main as report_main
from prune_exp.report.metric import ReportMetric
from prune_exp.report.styles import StrategyStyles
from prune_exp.report.tables import (
    available_costs,
    bootstrap_ci,
    cell_stats,
    choose_budgets,
    cost_axis,
    dense_by_seed,
    dense_costs,
    dense_stats,
    largest_compression_at_dense,
    paired,
    search_costs,
    with_setting,
)
from prune_exp.retrain.strategies import builtin_strategies, strategy_config

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


# Mean and median of the dense model disagree: mean 0.937833..., median 0.956 (seed 1).
MM_DENSE = {0: 0.90, 1: 0.956, 2: 0.9575}
MM_COMPS = [2.0, 4.0, 8.0]
# Per strategy and compression, the test accuracy of seeds 0, 1, 2 (the middle one is the median):
#             median vs dense median     most seeds >= own dense      median vs dense mean (old)
# WR  2x: 0.956 >= 0.956 (equal)   3 of 3                           yes
#     4x: 0.95  <  0.956           2 of 3 (seed 1 below its 0.956)  yes
#     8x: 0.93                     1 of 3                           no (0.93 < 0.9378)
# FT  2x: 0.957                    2 of 3 (seed 0 below its 0.90)   yes
#     4x: 0.94                     1 of 3                           yes
# LRR   : 0.955 at every level     2 of 3 at every level            yes
MM_CELLS = {
    "finetune": [[0.89, 0.957, 0.958], [0.85, 0.94, 0.99], [0.80, 0.85, 0.90]],
    "weight_rewind": [[0.95, 0.956, 0.96], [0.94, 0.95, 0.96], [0.91, 0.93, 0.94]],
    "lr_rewind": [[0.95, 0.955, 0.96]] * 3,
}
MM_BY_MEDIAN = {"finetune": 2.0, "weight_rewind": 2.0, "lr_rewind": None}
MM_BY_SEED = {"finetune": 2.0, "weight_rewind": 4.0, "lr_rewind": 8.0}


def mm_rows(strategy: str, seed: int) -> list[dict]:
    """One job of the mean-vs-median sweep: the dense model, then one round per compression."""
    base = {"strategy": strategy, "seed": seed, "budget": 1, "rounds": 3, "select_metric": "acc", "target": 0.875}
    accs = [MM_DENSE[seed]] + [cell[seed] for cell in MM_CELLS[strategy]]
    return [
        {
            **base,
            "round": r,
            "target_sparsity": 1 - 1 / c,
            "sparsity": 1 - 1 / c,
            "compression": c,
            "test_acc": acc,
            "val_acc": acc,
        }
        for r, (c, acc) in enumerate(zip([1.0, *MM_COMPS], accs, strict=True))
    ]


def mm_records() -> pd.DataFrame:
    return with_setting(pd.DataFrame([r for st in MM_CELLS for seed in SEEDS for r in mm_rows(st, seed)]), [])


def mm_headline() -> pd.DataFrame:
    df = mm_records()
    dense = dense_by_seed(df, "test_acc")
    return largest_compression_at_dense(
        cell_stats(choose_budgets(df, "val_acc"), dense, "test_acc"), dense_stats(dense)
    )


def largest(h: pd.DataFrame, column: str) -> dict[str, float | None]:
    return {st: (None if np.isnan(v) else float(v)) for (_, st), v in h[column].items()}


def test_headline_compares_the_median_with_the_dense_median_not_the_mean() -> None:
    h = mm_headline()
    assert (
        statistics.mean(MM_DENSE.values()) == pytest.approx(0.9378333) and statistics.median(MM_DENSE.values()) == 0.956
    )
    assert largest(h, "compression") == MM_BY_MEDIAN
    assert set(h["dense_median"]) == {0.956}
    assert h.loc[("all", "weight_rewind"), "sparsity"] == 0.5  # 2x, where its median equals the dense median
    # The old rule (a median against the dense mean) answers differently on these records.
    old = {
        st: max(
            (c for c, cell in zip(MM_COMPS, cells, strict=True) if statistics.median(cell) >= 0.9378333), default=None
        )
        for st, cells in MM_CELLS.items()
    }
    assert old == {"finetune": 4.0, "weight_rewind": 4.0, "lr_rewind": 8.0} != MM_BY_MEDIAN


def test_headline_paired_counts_a_cell_when_most_seeds_match_their_own_dense_model() -> None:
    h = mm_headline()
    assert largest(h, "paired_compression") == MM_BY_SEED
    assert h.loc[("all", "lr_rewind"), "paired_sparsity"] == 0.875
    # An independent count: seeds at or above their own seed's dense model, more than half of 3.
    for st, cells in MM_CELLS.items():
        ok = [
            c
            for c, cell in zip(MM_COMPS, cells, strict=True)
            if sum(a >= MM_DENSE[s] for s, a in enumerate(cell)) > 1.5
        ]
        assert max(ok) == MM_BY_SEED[st]


def test_headline_paired_needs_more_than_half_of_the_seeds() -> None:
    df = mm_records()
    df = df[df["seed"] != 2]  # 2 seeds: FT at 2x has 1 of 2 at its dense model, which is not most
    dense = dense_by_seed(df, "test_acc")
    stats = cell_stats(choose_budgets(df, "val_acc"), dense, "test_acc")
    assert stats.loc[("all", 0.5, "finetune"), "at_dense"] == 1
    h = largest_compression_at_dense(stats, dense_stats(dense))
    assert np.isnan(h.loc[("all", "finetune"), "paired_compression"])
    assert h.loc[("all", "weight_rewind"), "paired_compression"] == 2.0  # 2 of 2 at 2x, 1 of 2 at 4x


def test_headline_direction_lower_is_better() -> None:
    """Where lower is better (a loss), the same comparison turns round."""
    df = mm_records()
    dense = dense_by_seed(df, "test_acc")
    stats = cell_stats(choose_budgets(df, "val_acc"), dense, "test_acc", higher_is_better=False)
    h = largest_compression_at_dense(stats, dense_stats(dense), higher_is_better=False)
    assert largest(h, "compression") == {"finetune": 8.0, "weight_rewind": 8.0, "lr_rewind": 8.0}
    assert stats.loc[("all", 0.5, "finetune"), "at_dense"] == 1  # only seed 0 (0.89 <= 0.90)


def test_the_report_states_the_dense_median_and_draws_it(tmp_path: Path) -> None:
    from prune_exp.report import plots as P

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for i, (st, seed) in enumerate((st, seed) for st in MM_CELLS for seed in SEEDS):
        write_job(sweep / str(i), [f"retrain={st}", f"seed={seed}"], mm_rows(st, seed), "done")
    report_sweep(sweep, out=lambda _: None)
    summary = (sweep / "summary.md").read_text()
    assert "Dense model: test_acc 93.78 ± 3.28 (3) % (n seeds), median 95.60 %." in summary
    heading = (
        "### Largest compression at which the median over seeds is at or above the dense median over seeds (95.60 %)"
    )
    rows = {r["strategy"]: r for r in md_table(summary, heading)}
    assert {st: r["largest compression with median ≥ dense median"] for st, r in rows.items()} == {
        "finetune": "2.00×",
        "weight_rewind": "2.00×",
        "lr_rewind": "never",
    }
    assert {st: r["largest compression where most seeds ≥ their dense"] for st, r in rows.items()} == {
        "finetune": "2.00×",
        "weight_rewind": "4.00×",
        "lr_rewind": "8.00×",
    }
    df = mm_records()
    dense = dense_by_seed(df, "test_acc")
    stats = cell_stats(choose_budgets(df, "val_acc"), dense, "test_acc")
    fig = P.compression_figure(stats, dense_stats(dense), ReportMetric("acc"), StrategyStyles.of(df))
    try:
        line = lines_by_gid(fig.axes[0])["dense_median"]
        assert list(line.get_ydata()) == [pytest.approx(95.6)] * 2 and "dense median 95.60%" in line.get_label()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


# ------------------------------------------------------------------ bootstrap intervals
def test_bootstrap_interval_is_deterministic_and_contains_the_mean() -> None:
    x = [0.012, -0.004, 0.021, 0.007, 0.0]
    lo, hi = bootstrap_ci(x)
    assert bootstrap_ci(x) == (lo, hi) == bootstrap_ci(np.array(x))
    assert lo < statistics.mean(x) < hi and min(x) <= lo and hi <= max(x)
    assert bootstrap_ci(x, seed=1) != (lo, hi)  # the interval is a resample: another RNG, another one


def test_bootstrap_interval_equals_a_hand_computed_resample() -> None:
    x = [0.0, 0.01, 0.03]
    rng = np.random.default_rng(0)
    means = sorted(sum(x[rng.integers(0, 3)] for _ in range(3)) / 3 for _ in range(2000))

    def quantile(q: float) -> float:  # linear interpolation between order statistics (numpy's default)
        pos = q * (len(means) - 1)
        i = int(pos)
        return means[i] + (pos - i) * (means[i + 1] - means[i])

    assert bootstrap_ci(x) == (pytest.approx(quantile(0.025), abs=1e-15), pytest.approx(quantile(0.975), abs=1e-15))
    # Two seeds: a quarter of the resamples are (a, a), a quarter (b, b), so the interval is [a, b].
    assert bootstrap_ci([-0.01, 0.02]) == (-0.01, 0.02)


def test_one_seed_has_no_interval() -> None:
    assert bootstrap_ci([0.01]) is None and bootstrap_ci([]) is None
    df = hand_made(rng_seed=3)
    p = paired(choose_budgets(df[df["seed"] == 0], "val_acc"), "lr_rewind", "finetune", "test_acc")
    assert p["n"].eq(1).all() and p["ci_lo"].isna().all() and p["ci_hi"].isna().all()
    assert ReportMetric("acc").diff_ci_wins(0.0053, np.nan, np.nan, 1, 0, 0) == "+0.53 (1–0)"
    assert ReportMetric("acc").diff_ci_wins(0.0053, -0.001, 0.012, 2, 1, 0) == "+0.53 [-0.10, +1.20] (2–1)"
    assert ReportMetric("acc").diff_ci_wins(0.0, -0.001, 0.001, 1, 1, 1) == "+0.00 [-0.10, +0.10] (1–1, =1)"


def test_paired_table_shows_the_bootstrap_interval(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for i, (st, seed) in enumerate((st, seed) for st in MM_CELLS for seed in SEEDS):
        write_job(sweep / str(i), [f"retrain={st}", f"seed={seed}"], mm_rows(st, seed), "done")
    report_sweep(sweep, out=lambda _: None, plots=False)
    table = md_table((sweep / "summary.md").read_text(), "### Paired differences over the same seeds")
    row = next(r for r in table if r["target sparsity %"] == "50.0")
    diffs = [a - b for a, b in zip(MM_CELLS["lr_rewind"][0], MM_CELLS["finetune"][0], strict=True)]  # +6, -0.2, +0.2
    lo, hi = bootstrap_ci(diffs)
    assert lo < statistics.mean(diffs) < hi
    assert row["LRR − FT"] == f"+2.00 [{100 * lo:+.2f}, {100 * hi:+.2f}] (2–1)"
    p = paired(choose_budgets(mm_records(), "val_acc"), "lr_rewind", "finetune", "test_acc").loc[("all", 0.5)]
    assert (p["ci_lo"], p["ci_hi"]) == (pytest.approx(lo), pytest.approx(hi))


LOWER = {"mse": {"higher_is_better": False, "percent": False}, "loss": {"higher_is_better": False, "percent": False}}


def mirrored_rows(strategy: str, seed: int) -> list[dict]:
    """The mean-vs-median job with mse = 1 - acc in place of acc: lower is better, not a fraction."""
    rows = []
    for r in mm_rows(strategy, seed):
        acc = r.pop("test_acc"), r.pop("val_acc")
        rows.append({**r, "select_metric": "mse", "metrics": LOWER, "test_mse": 1 - acc[0], "val_mse": 1 - acc[1]})
    return rows


def report_of(tmp_path: Path, make_rows) -> str:
    sweep = tmp_path / make_rows.__name__
    sweep.mkdir()
    for i, (st, seed) in enumerate((st, seed) for st in MM_CELLS for seed in SEEDS):
        write_job(sweep / str(i), [f"retrain={st}", f"seed={seed}"], make_rows(st, seed), "done")
    report_sweep(sweep, out=lambda _: None, plots=False)
    return (sweep / "summary.md").read_text()


def test_a_lower_is_better_metric_turns_every_verdict_round(tmp_path: Path) -> None:
    """mse = 1 - acc on the same records: the headline, the paired wins and the budget choice
    give the acc report's answers, read the other way round, in the metric's own units."""
    summary, acc_summary = report_of(tmp_path, mirrored_rows), report_of(tmp_path, mm_rows)
    assert "### Test mse per strategy (lower is better)" in summary  # the sweep's select metric, no (%)
    assert f"Dense model: test_mse {1 - statistics.mean(MM_DENSE.values()):.4g} ± " in summary
    heading = "### Largest compression at which the median over seeds is at or below the dense median over seeds"
    assert f"{heading} ({1 - 0.956:.4g})" in summary
    rows = {r["strategy"]: r for r in md_table(summary, heading)}
    assert {st: r["largest compression with median ≤ dense median"] for st, r in rows.items()} == {
        st: "never" if c is None else f"{c:.2f}×" for st, c in MM_BY_MEDIAN.items()
    }
    assert {st: r["largest compression where most seeds ≤ their dense"] for st, r in rows.items()} == {
        st: f"{c:.2f}×" for st, c in MM_BY_SEED.items()
    }
    # Paired: the seeds where A was better are the same seeds; the mean difference changes sign.
    mirrored = md_table(summary, "### Paired differences over the same seeds")
    plain = md_table(acc_summary, "### Paired differences over the same seeds")
    assert len(mirrored) == len(plain) == 3
    for m_row, a_row in zip(mirrored, plain, strict=True):
        for pair in ("WR − FT", "LRR − FT", "LRR − WR"):
            assert m_row[pair].rsplit(" (", 1)[1] == a_row[pair].rsplit(" (", 1)[1]  # "(2–1)"
            assert float(m_row[pair].split()[0]) == pytest.approx(-float(a_row[pair].split()[0]) / 100, abs=1e-4)
    assert "lower is better" in summary and "higher is better" in acc_summary


def test_budgets_are_chosen_in_the_select_metrics_direction() -> None:
    rows = [
        {
            "setting": "all",
            "strategy": "finetune",
            "target_sparsity": 0.5,
            "round": 1,
            "seed": s,
            "budget": b,
            "val_mse": v,
        }
        for s in (0, 1)
        for b, v in ((1, 0.30), (2, 0.20))
    ]
    df = pd.DataFrame(rows)
    assert set(choose_budgets(df, "val_mse", higher_is_better=False)["budget"]) == {2}
    assert set(choose_budgets(df, "val_mse")["budget"]) == {1}


def test_records_without_the_metrics_column_are_the_classification_tasks() -> None:
    old = pd.DataFrame({"test_acc": [0.9], "test_loss": [0.3]})
    assert ReportMetric.of(old, "acc") == ReportMetric("acc", higher_is_better=True, percent=True)
    assert ReportMetric.of(old, "loss") == ReportMetric("loss", higher_is_better=False, percent=False)
    with pytest.raises(ConfigError, match=r"--metric 'auc': the records have no test_auc; allowed: acc, loss"):
        ReportMetric.of(old, "auc")


def test_the_report_command_refuses_a_metric_the_records_lack(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep / "0", ["retrain=finetune"], mirrored_rows("finetune", 0), "done")
    with pytest.raises(SystemExit) as e:
        report_main([str(sweep), "--metric", "acc", "--no-plots"])
    assert e.value.code == 2
    assert "--metric 'acc': the records have no test_acc; allowed: mse" in capsys.readouterr().err
    assert not (sweep / "summary.md").exists()  # refused before anything is written


# ------------------------------------------------------------------ sweep dirs on disk
def write_job(job_dir: Path, overrides: list[str], rows: list[dict], state: str | None) -> None:
    """A job dir as a job writes it; its config has the real retrain: of a built-in strategy."""
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    strategy = rows[0]["strategy"] if rows else "finetune"
    retrain = asdict(strategy_config(strategy)) if strategy in builtin_strategies() else {"strategy": strategy}
    (job_dir / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"seed": rows[0]["seed"] if rows else 0, "retrain": retrain}, allow_unicode=True)
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


def write_multirun_yaml(sweep: Path, task: list[str]) -> None:
    """The multirun.yaml Hydra writes for a basic sweep over ``task``: the report's list of jobs."""
    sweeper = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"sweeper": sweeper, "overrides": {"task": task}}}))


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


# ------------------------------------------------------------------ real multiruns
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


# ------------------------------------------------------------------ search cost
DENSE_EPOCHS = 10
FLOPS_PER_EPOCH = 12_000_036_000  # 3 x forward FLOPs x examples: an exact integer
DENSE_SECONDS = {0: 5.0, 1: 7.0, 2: 6.5}  # per seed: one dense run each, shared by the strategies
SPEED = {"finetune": 1.0, "weight_rewind": 1.5, "lr_rewind": 2.25}  # wall s per retraining epoch


def cost_rows(strategy: str, seed: int, budget: int, levels: list[float], flops: bool = True) -> list[dict]:
    """A job's records with its costs as the app writes them: the dense model (round 0), then one
    round per level (iterative when several), ``budget`` epochs each. Without ``flops``: the
    records written before training FLOPs were counted. LR rewinding does best on validation at
    t = 2, the others at their longest budget."""
    rows = []
    cum_epochs, cum_seconds, cum_flops = DENSE_EPOCHS, DENSE_SECONDS[seed], DENSE_EPOCHS * FLOPS_PER_EPOCH
    for r, level in enumerate([0.0, *levels]):
        epochs = budget if r else 0
        seconds = SPEED[strategy] * epochs + 0.5 * seed if r else 0.0
        cum_epochs, cum_seconds, cum_flops = (
            cum_epochs + epochs,
            cum_seconds + seconds,
            cum_flops + epochs * FLOPS_PER_EPOCH,
        )
        acc = round(0.9 - 0.1 * level + 0.01 * seed + 0.005 * STRATS.index(strategy) + 0.001 * budget, 4)
        row = {
            "strategy": strategy,
            "seed": seed,
            "budget": budget,
            "rounds": len(levels),
            "select_metric": "acc",
            "target": levels[-1],
            "job_dir": "x",
            "dense_hash": f"h{seed}",
            "round": r,
            "target_sparsity": level,
            "sparsity": level,
            "compression": 1 / (1 - level),
            "test_acc": acc if r else 0.9 + 0.01 * seed,
            "val_acc": (acc + (0.02 if strategy == "lr_rewind" and budget == 2 else 0.0)) if r else 0.9,
            "retrain_epochs": epochs,
            "retrain_seconds": seconds,
            "cum_epochs": cum_epochs,
            "cum_seconds": cum_seconds,
            "dense_epochs": DENSE_EPOCHS,
            "dense_seconds": DENSE_SECONDS[seed],
        }
        if flops:
            row |= {
                "train_flops": epochs * FLOPS_PER_EPOCH,
                "dense_train_flops": DENSE_EPOCHS * FLOPS_PER_EPOCH,
                "cum_train_flops": cum_flops,
            }
        rows.append(row)
    return rows


def cost_jobs(budgets: list[int], levels: list[float], flops: bool = True) -> list[list[dict]]:
    return [cost_rows(st, seed, t, levels, flops) for st in STRATS for t in budgets for seed in SEEDS]


def cost_sweep(root: Path, budgets: list[int], levels: list[float], flops: bool = True) -> Path:
    """A finished sweep dir of ``cost_jobs``."""
    sweep = root / "sweep"
    sweep.mkdir()
    for i, rows in enumerate(cost_jobs(budgets, levels, flops)):
        r = rows[0]
        write_job(
            sweep / str(i),
            [f"retrain={r['strategy']}", f"retrain.budget={r['budget']}", f"seed={r['seed']}"],
            rows,
            "done",
        )
    return sweep


def retraining(rows: list[dict], upto: int) -> dict[str, float]:
    """A job's retraining over rounds 1..upto, summed from each round's own cost (not from the
    cumulative columns the report reads)."""
    done = [r for r in rows if 1 <= r["round"] <= upto]
    return {
        "epochs": sum(r["retrain_epochs"] for r in done),
        "seconds": sum(r["retrain_seconds"] for r in done),
        "train_flops": sum(r.get("train_flops", 0) for r in done),
    }


def md_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first markdown table after the line that starts with ``heading``, as {column: cell}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    block = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        block.append([c.strip() for c in line.strip().strip("|").split("|")])
    return [dict(zip(block[0], cells, strict=True)) for cells in block[2:]]


def lines_by_gid(ax) -> dict[str, object]:
    return {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}


def test_search_cost_table_is_the_median_retraining_after_a_dense_stage_counted_once(tmp_path: Path) -> None:
    levels = [0.5, 0.75]  # iterative: two rounds of t = 3 epochs
    sweep = cost_sweep(tmp_path, [3], levels)
    report_sweep(sweep, out=lambda _: None)
    summary = (sweep / "summary.md").read_text()
    for ext in ("png", "svg"):
        assert (sweep / f"accuracy_vs_search_cost.{ext}").stat().st_size > 10_000
    assert "![accuracy_vs_search_cost](accuracy_vs_search_cost.png)" in summary
    assert "Figure: [accuracy_vs_search_cost.png](accuracy_vs_search_cost.png)." in summary

    # The dense stage once: median over the 3 seeds' dense runs (5.0, 7.0, 6.5 s), not per job.
    assert summary.count("Dense stage, counted once") == 1
    assert (
        "Dense stage, counted once (one run per seed, shared by every strategy through the cache): "
        "10 epochs, 1.200e+11 training FLOPs, 6.5 wall s (median over 3 seeds)." in summary
    )
    table = md_table(summary, "### Search cost")
    jobs = cost_jobs([3], levels)
    assert [row["sparsity %"] for row in table] == ["50.0", "75.0"]
    for row, (r, level) in zip(table, enumerate(levels, start=1), strict=True):
        for st in STRATS:
            per_seed = [retraining(rows, r) for rows in jobs if rows[0]["strategy"] == st]
            assert len(per_seed) == 3 and all(rows[r]["target_sparsity"] == level for rows in jobs)
            med = {k: statistics.median(c[k] for c in per_seed) for k in ("epochs", "train_flops", "seconds")}
            assert row[f"{st} epochs"] == f"{med['epochs']:g}" == str(3 * r)  # not 10 + 3r: dense not added
            assert row[f"{st} FLOPs"] == f"{med['train_flops']:.3e}"
            assert int(med["train_flops"]) == 3 * r * FLOPS_PER_EPOCH
            assert row[f"{st} s"] == f"{med['seconds']:.1f}"
            assert f"{st} t" not in row  # one budget: nothing was chosen
    # Round 2 of LR rewinding: 2 x 3 epochs x 2.25 s + 0.5 s x seed, median over seeds 0, 1, 2.
    assert table[1]["lr_rewind s"] == "14.5" and table[1]["lr_rewind FLOPs"] == "7.200e+10"


def test_search_cost_figure_plots_median_cumulative_flops_from_the_dense_stage() -> None:
    from prune_exp.report import plots as P

    levels = [0.5, 0.75]
    jobs = cost_jobs([3], levels)
    df = with_setting(pd.DataFrame([r for rows in jobs for r in rows]), [])
    costs = available_costs(df)
    assert costs == ["epochs", "train_flops", "seconds"] and cost_axis(df) == "train_flops"
    dcosts = dense_costs(df, costs)
    dense_flops = DENSE_EPOCHS * FLOPS_PER_EPOCH
    assert dcosts.loc["all", "n"] == 3 and dcosts.loc["all", "train_flops"] == dense_flops
    fig = P.search_cost_figure(
        search_costs(df, "test_acc", costs),
        dcosts,
        dense_stats(dense_by_seed(df, "test_acc")),
        "train_flops",
        ReportMetric("acc"),
        StrategyStyles.of(df),
    )
    try:
        (ax,) = fig.axes[:1]
        lines = lines_by_gid(ax)
        assert set(lines) == {*STRATS, "dense_stage", "dense_median"}
        assert (
            list(lines["dense_median"].get_ydata()) == [pytest.approx(100 * statistics.median([0.9, 0.91, 0.92]))] * 2
        )
        vline = lines["dense_stage"]
        assert list(vline.get_xdata()) == [dense_flops, dense_flops]
        assert vline.get_label() == "dense stage (counted once): 1.200e+11 training FLOPs"
        for st in STRATS:
            x, y = lines[st].get_xdata(), lines[st].get_ydata()
            # the dense model, then each round: median over seeds of the cumulative FLOPs
            expected_x = [dense_flops] + [
                statistics.median(rows[r]["cum_train_flops"] for rows in jobs if rows[0]["strategy"] == st)
                for r in (1, 2)
            ]
            assert list(x) == expected_x == [dense_flops + 3 * r * FLOPS_PER_EPOCH for r in (0, 1, 2)]
            expected_y = [100 * statistics.median([0.9, 0.91, 0.92])] + [
                100 * statistics.median(rows[r]["test_acc"] for rows in jobs if rows[0]["strategy"] == st)
                for r in (1, 2)
            ]
            assert list(y) == pytest.approx(expected_y)
        assert ax.get_xscale() == "log" and "training FLOPs" in ax.get_xlabel()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_search_cost_falls_back_to_epochs_without_flops_columns(tmp_path: Path) -> None:
    from prune_exp.report import plots as P

    levels = [0.5, 0.75]
    jobs = cost_jobs([3], levels, flops=False)
    df = with_setting(pd.DataFrame([r for rows in jobs for r in rows]), [])
    assert not any("flops" in c for c in df.columns)
    costs = available_costs(df)
    assert costs == ["epochs", "seconds"] and cost_axis(df) == "epochs"
    fig = P.search_cost_figure(
        search_costs(df, "test_acc", costs),
        dense_costs(df, costs),
        dense_stats(dense_by_seed(df, "test_acc")),
        "epochs",
        ReportMetric("acc"),
        StrategyStyles.of(df),
    )
    try:
        ax = fig.axes[0]
        lines = lines_by_gid(ax)
        for st in STRATS:
            assert list(lines[st].get_xdata()) == [10, 13, 16]  # cum_epochs: dense stage + 3 per round
        assert list(lines["dense_stage"].get_xdata()) == [10, 10]
        assert lines["dense_stage"].get_label() == "dense stage (counted once): 10 epochs"
        assert "epochs (no FLOPs in these records)" in ax.get_xlabel()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)

    sweep = cost_sweep(tmp_path, [3], levels, flops=False)
    report_sweep(sweep, out=lambda _: None)
    summary = (sweep / "summary.md").read_text()
    assert (sweep / "accuracy_vs_search_cost.png").stat().st_size > 10_000
    assert "10 epochs, 6.5 wall s (median over 3 seeds)." in summary
    assert "These records have no training FLOPs" in summary
    table = md_table(summary, "### Search cost")
    assert list(table[0]) == ["sparsity %", "compression"] + [f"{st} {c}" for st in STRATS for c in ("epochs", "s")]
    assert [row["finetune epochs"] for row in table] == ["3", "6"]


def test_search_cost_with_several_budgets_connects_each_sparsity_across_budgets(tmp_path: Path) -> None:
    from prune_exp.report import plots as P

    levels = [0.8]  # one-shot, budgets t = 2 and 4
    jobs = cost_jobs([2, 4], levels)
    df = with_setting(pd.DataFrame([r for rows in jobs for r in rows]), [])
    costs = available_costs(df)
    scosts = search_costs(df, "test_acc", costs)
    fig = P.search_cost_figure(
        scosts,
        dense_costs(df, costs),
        dense_stats(dense_by_seed(df, "test_acc")),
        "train_flops",
        ReportMetric("acc"),
        StrategyStyles.of(df),
    )
    try:
        lines = lines_by_gid(fig.axes[0])
        assert set(lines) == {f"{st}@0.8" for st in STRATS} | {"dense_stage", "dense_median"}
        for st in STRATS:
            # one point per budget, in order of cost; not joined to the dense model
            assert list(lines[f"{st}@0.8"].get_xdata()) == [(10 + t) * FLOPS_PER_EPOCH for t in (2, 4)]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)

    sweep = cost_sweep(tmp_path, [2, 4], levels)
    report_sweep(sweep, out=lambda _: None)
    summary = (sweep / "summary.md").read_text()
    (row,) = md_table(summary, "### Search cost")
    assert "Each cell is at the budget t chosen on val_acc" in summary
    chosen = {"finetune": 4, "weight_rewind": 4, "lr_rewind": 2}  # by the fixture's validation accuracies
    for st, t in chosen.items():
        per_seed = [retraining(rows, 1) for rows in jobs if rows[0]["strategy"] == st and rows[0]["budget"] == t]
        assert row[f"{st} t"] == str(t)
        assert row[f"{st} epochs"] == str(t)
        assert row[f"{st} FLOPs"] == f"{t * FLOPS_PER_EPOCH:.3e}"
        assert row[f"{st} s"] == f"{statistics.median(c['seconds'] for c in per_seed):.1f}"
    assert row["lr_rewind s"] == "5.0" and row["finetune s"] == "4.5"


def test_the_report_command_does_not_import_torch(tmp_path: Path) -> None:
    sweep = cost_sweep(tmp_path, [3], [0.5])
    code = (
        "import sys\n"
        "from prune_exp.report.cli import main\n"
        "rc = main([sys.argv[1]])\n"
        "assert 'torch' not in sys.modules, 'the report imported torch'\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(sweep)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (sweep / "accuracy_vs_search_cost.png").exists()


def visible_tick_labels(fig) -> list[tuple[str, object]]:
    """(text, bounding box in pixels) of every tick label drawn on an x axis of ``fig`` (top
    axes included), in the order of the axes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in [a for main in fig.axes for a in (main, *main.child_axes)]:
        lo, hi = sorted(ax.xaxis.get_view_interval())
        labels = []
        for tick in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks():
            if lo <= tick.get_loc() <= hi:
                labels += [t for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text()]
        out.append(sorted(((t.get_text(), t.get_window_extent(renderer)) for t in labels), key=lambda b: b[1].x0))
    return out


@pytest.mark.parametrize(
    ("budget", "levels", "flops"),
    [
        (3, [0.5, 0.75], True),  # 1.2e11 to 1.9e11 FLOPs: a fifth of a decade
        (30, [0.5, 0.75, 0.9], True),  # 1.2e11 to 1.2e12: the "3×10¹¹4×10¹¹"
        (2, [0.5], False),  # 10 to 12 epochs
    ],
)
def test_search_cost_tick_labels_do_not_overlap(budget: int, levels: list[float], flops: bool) -> None:
    from prune_exp.report import plots as P

    df = with_setting(pd.DataFrame([r for rows in cost_jobs([budget], levels, flops) for r in rows]), [])
    costs = available_costs(df)
    axis = cost_axis(df)
    fig = P.search_cost_figure(
        search_costs(df, "test_acc", costs),
        dense_costs(df, costs),
        dense_stats(dense_by_seed(df, "test_acc")),
        axis,
        ReportMetric("acc"),
        StrategyStyles.of(df),
    )
    try:
        bottom, top = visible_tick_labels(fig)
        assert len(bottom) >= 3 and len(top) >= 3, (bottom, top)  # still enough ticks to read the axis
        for labels in (bottom, top):
            for (a, box_a), (b, box_b) in itertools.pairwise(labels):
                assert not box_a.overlaps(box_b), f"tick labels {a!r} and {b!r} overlap"
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
