"""The search cost: the table and figure of retraining cost after a dense stage counted once,
their fallback to epochs without FLOPs, their tick labels, and a report command without torch."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from report_helpers import SEEDS, STRATS, level_row, lines_by_gid, md_table, write_job

from prune_exp.report import report_sweep
from prune_exp.report.metric import ReportMetric
from prune_exp.report.styles import StrategyStyles
from prune_exp.report.tables import (
    available_costs,
    cost_axis,
    dense_by_seed,
    dense_costs,
    dense_stats,
    search_costs,
    with_setting,
)

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
            **level_row(strategy, seed, budget, levels, r),
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
    from prune_exp.report import cost_figure as P

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
    from prune_exp.report import cost_figure as P

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
    from prune_exp.report import cost_figure as P

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
    from prune_exp.report import cost_figure as P

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
