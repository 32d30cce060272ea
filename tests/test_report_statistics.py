"""Sweep reports' statistics against independent computations: per-cell statistics, the budget
choice, paired differences and their bootstrap intervals."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
from report_helpers import BUDGETS, LEVELS, MM_CELLS, SEEDS, STRATS, hand_made, md_table, mm_records, mm_rows, write_job

from prune_exp.report import report_sweep
from prune_exp.report.metric import ReportMetric
from prune_exp.report.tables import bootstrap_ci, cell_stats, choose_budgets, dense_by_seed, dense_stats, paired


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
