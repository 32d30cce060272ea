"""The search-cost figure: the test metric against what it cost to find each pruned model.
Its panels, titles and legends are laid out as every figure's (plots.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

from prune_exp.report import plots as P
from prune_exp.report.files import SEARCH_COST_FIGURE, ReportFiles
from prune_exp.report.metric import ReportMetric
from prune_exp.report.styles import StrategyStyles
from prune_exp.report.tables import COST_FORMAT, COST_UNIT, LEVEL

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
TOP_AXIS_LABEL = "search cost as a multiple of the dense stage's (1× = the dense stage alone)"


def accuracy_vs_search_cost(
    costs: pd.DataFrame,
    dense_costs: pd.DataFrame,
    dense: pd.DataFrame,
    files: ReportFiles,
    cost: str,
    metric: ReportMetric,
    styles: StrategyStyles,
    subtitle: str = "",
) -> list[Path]:
    """``search_cost_figure``, written to the sweep dir."""
    fig = search_cost_figure(costs, dense_costs, dense, cost, metric, styles, subtitle)
    return P.save(fig, files, SEARCH_COST_FIGURE)


def search_cost_figure(
    costs: pd.DataFrame,
    dense_costs: pd.DataFrame,
    dense: pd.DataFrame,
    cost: str,
    metric: ReportMetric,
    styles: StrategyStyles,
    subtitle: str = "",
) -> Figure:
    """Accuracy against search cost: what it cost to find each pruned model (the paper's
    equal-budget argument). One panel per setting; per strategy, the median over seeds of the
    test metric (``costs``: tables.search_costs) against the median over seeds of the
    cumulative cost ``cost`` (training FLOPs; epochs for records without FLOPs), log x, one
    point per (strategy, budget, target sparsity), min–max over seeds shaded.

    The x axis is the cumulative cost, dense stage included, not the retraining beyond it:
    that is what finding the model cost; every model, the dense one included, has a positive
    cost on the log axis (retraining alone is 0 for the dense model); and the vertical line at
    the dense stage's cost ("counted once": one dense run per seed, shared by every strategy
    through the cache) splits each point's cost into the shared part (left of it) and its own
    retraining (right of it), which report.md's search-cost table lists. The top axis is the
    same cost as a multiple of the dense stage's (TOP_AXIS_LABEL): 1× is the dense stage
    alone, 3× the dense stage and twice as much retraining. At equal budget the strategies
    share their x values: the figure then compares accuracy at equal cost.

    Lines: when a strategy has a single budget per level (the equal-budget comparison), its
    points are its pruning trajectory, connected in order of cost from the dense model (an
    iterative job reaches each level after the rounds before it). When it has several budgets
    (budget_sweep), the points of each target sparsity are connected across budgets in order
    of cost, one line per (strategy, sparsity): colour = strategy, marker = sparsity, so each
    line reads as "what more retraining buys at this sparsity"; joining different
    sparsities would mix two effects. Where a line's points share one cost (one-shot jobs at
    one budget) the min–max is drawn as vertical bars instead of a band.

    Each data line has gid ``"<strategy>"`` (trajectory) or ``"<strategy>@<level>"`` (one
    sparsity across budgets); the dense stage's line has gid ``"dense_stage"``."""
    settings = list(costs.index.get_level_values("setting").unique())
    fig, axes = P.grid(len(settings))
    what = f"Test {metric.name} vs search cost: median over seeds, min–max shaded"
    P.titles(fig, axes, what, subtitle, [P.setting_title(s) for s in settings])
    for ax, setting in zip(axes, settings, strict=True):
        s = costs.xs(setting, level="setting").reset_index()
        _search_cost_panel(ax, s, float(dense_costs.loc[setting, cost]), dense.loc[setting], cost, metric, styles)
        ax.grid(alpha=0.3)
        P.legend_below(ax, fontsize=7, ncol=2)
    return fig


def _search_cost_panel(
    ax: Axes,
    s: pd.DataFrame,
    x_dense: float,
    d_row: pd.Series,
    cost: str,
    metric: ReportMetric,
    styles: StrategyStyles,
) -> None:
    """One setting's panel of ``search_cost_figure``, but its title, grid and legend: ``s`` is the
    setting's search costs, ``x_dense`` its dense stage's cost, ``d_row`` its dense model's statistics."""
    col = f"cum_{cost}"
    levels = sorted(s[LEVEL].unique())
    marker = {lv: MARKERS[i % len(MARKERS)] for i, lv in enumerate(levels)}
    several = bool((s.groupby(["strategy", LEVEL])["budget"].nunique() > 1).any())
    for strategy in styles.ordered(s["strategy"]):
        st = s[s["strategy"] == strategy]
        label = f"{styles.label[strategy]} (n={st['n'].max()})"
        if several:
            lines = [(f"{strategy}@{lv}", st[st[LEVEL] == lv], marker[lv], False) for lv in levels]
        else:
            lines = [(strategy, st, "o", True)]
        _cost_lines(ax, lines, col, x_dense, d_row, styles.color[strategy], label, metric.scale)
    if several:
        for lv in levels:
            ax.plot([], [], ls="", marker=marker[lv], color="black", label=f"sparsity {100 * lv:.1f}%")
    P.dense_band(ax, d_row, metric)
    ax.axvline(
        x_dense,
        color="black",
        lw=1,
        ls=":",
        gid="dense_stage",
        label=f"dense stage (counted once): {COST_FORMAT[cost](x_dense)} {COST_UNIT[cost]}",
    )
    _cost_axes(ax, cost, x_dense, float(s[col].max()))
    what = "training FLOPs" if cost == "train_flops" else "epochs (no FLOPs in these records)"
    ax.set_xlabel(f"search cost: cumulative {what}, dense stage included, log scale")
    ax.set_ylabel(metric.axis_label())


def _cost_lines(
    ax: Axes, lines: list[tuple], col: str, x_dense: float, d_row: pd.Series, c: str, label: str, k: float
) -> None:
    """One strategy's lines, each (gid, its rows, marker, from the dense model at ``x_dense``?), in
    colour ``c``, the first one labelled; the min–max over seeds a band, or bars where the costs are one."""
    for gid, d, mk, from_dense in lines:
        if d.empty:
            continue
        d = d.sort_values([col, LEVEL])
        x, med, lo, hi = (d[k].to_numpy(dtype=float) for k in (col, "median", "min", "max"))
        if from_dense:
            x = np.concatenate([[x_dense], x])
            med, lo, hi = (np.concatenate([[d_row[k]], v]) for k, v in (("median", med), ("min", lo), ("max", hi)))
        ax.plot(x, k * med, marker=mk, ms=3.5, color=c, label=label, gid=gid)
        label = "_nolegend_"
        if len(np.unique(x)) > 1:
            ax.fill_between(x, k * lo, k * hi, color=c, alpha=0.18, lw=0)
        else:
            ax.vlines(x, k * lo, k * hi, color=c, alpha=0.35, lw=3)


def _cost_axes(ax: Axes, cost: str, x_dense: float, x_max: float) -> None:
    """The log cost axis and, on top, the same cost as a multiple of the dense stage's. Our own
    ticks, minor ones unlabelled: on a log axis spanning less than a decade matplotlib labels
    every minor tick, and "3×10¹¹4×10¹¹" ran into each other."""
    ax.set_xscale("log")
    ax.set_xticks(_cost_ticks(x_dense, x_max))
    ax.xaxis.set_major_formatter(FuncFormatter(_sci if cost == "train_flops" else lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    top = ax.secondary_xaxis("top", functions=(lambda v, d=x_dense: v / d, lambda v, d=x_dense: v * d))
    top.set_xlabel(TOP_AXIS_LABEL, fontsize=8)
    top.set_xticks(_cost_ticks(1.0, x_max / x_dense))
    top.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    top.xaxis.set_minor_locator(NullLocator())
    top.tick_params(labelsize=7)


def _cost_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round ticks from ``lo`` (labelled: the dense stage) to ``hi`` for a log axis, each at
    least 1/n of the axis from the one before: 1-2-5 per decade over a decade or more,
    round steps (MaxNLocator) over less, where powers of ten say little."""
    if not hi > lo > 0:
        return [lo]
    span = float(np.log10(hi / lo))
    if span >= 1:
        candidates = LogLocator(base=10, subs=(1.0, 2.0, 5.0)).tick_values(lo, hi)
    else:
        candidates = MaxNLocator(nbins=2 * n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    ticks = [lo]
    for v in sorted(float(c) for c in candidates):
        if v <= hi * 1.02 and np.log10(v / ticks[-1]) >= span / n:
            ticks.append(v)
    return ticks


def _sci(v: float, _pos: object = None) -> str:
    """'$3\\times10^{11}$', '$1.25\\times10^{11}$', '$10^{12}$': a tick in scientific notation."""
    if v <= 0:
        return f"{v:g}"
    exp = int(np.floor(np.log10(v)))
    mantissa = f"{v / 10**exp:.4g}"
    if mantissa == "10":  # rounding carried into the next decade
        mantissa, exp = "1", exp + 1
    return f"$10^{{{exp}}}$" if mantissa == "1" else f"${mantissa}\\times10^{{{exp}}}$"
