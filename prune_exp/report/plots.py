"""The paper's figures, with matplotlib (Agg: no display needed). Each is written as PNG and SVG."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

from prune_exp.report.files import (
    BUDGET_FIGURE,
    COMPRESSION_FIGURE,
    FIGURE_FORMATS,
    LAYER_BY_ROUND_FIGURE,
    LAYER_FIGURE,
    SEARCH_COST_FIGURE,
    ReportFiles,
)
from prune_exp.report.metric import ReportMetric
from prune_exp.report.styles import StrategyStyles
from prune_exp.report.tables import COST_FORMAT, COST_UNIT, LEVEL
from prune_exp.store import bitpack


def save(fig: plt.Figure, files: ReportFiles, name: str) -> list[Path]:
    """Write ``fig`` as ``name`` in every FIGURE_FORMATS, each file whole or not at all (files.py)."""
    try:
        for ext in FIGURE_FORMATS:
            with files.write(f"{name}.{ext}") as tmp:
                fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)
    return [files.dir / f"{name}.{ext}" for ext in FIGURE_FORMATS]


def _dense_band(ax: plt.Axes, dense_row: pd.Series, m: ReportMetric) -> None:
    """The dense model's median over seeds (the curves are medians too: like with like), min–max shaded."""
    lo, hi = m.scale * dense_row["min"], m.scale * dense_row["max"]
    ax.axhspan(lo, hi, color="black", alpha=0.08, lw=0)
    ax.axhline(
        m.scale * dense_row["median"],
        color="black",
        lw=1,
        ls="--",
        gid="dense_median",
        label=f"dense median {m.value(dense_row['median'])}{'%' if m.percent else ''} "
        f"(band: min–max, n={int(dense_row['n'])})",
    )


def grid(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def accuracy_vs_compression(
    stats: pd.DataFrame,
    dense: pd.DataFrame,
    files: ReportFiles,
    metric: ReportMetric,
    styles: StrategyStyles,
    subtitle: str = "",
) -> list[Path]:
    """``compression_figure``, written to the sweep dir."""
    return save(compression_figure(stats, dense, metric, styles, subtitle), files, COMPRESSION_FIGURE)


def compression_figure(
    stats: pd.DataFrame, dense: pd.DataFrame, metric: ReportMetric, styles: StrategyStyles, subtitle: str = ""
) -> plt.Figure:
    """Median over seeds per strategy against the compression ratio (log2), min–max shaded; the
    dense model's median over seeds as a dashed line (gid ``"dense_median"``) in its min–max band."""
    settings = list(stats.index.get_level_values("setting").unique())
    fig, axes = grid(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        s = stats.xs(setting, level="setting").reset_index()
        for strategy in styles.ordered(s["strategy"]):
            d = s[s["strategy"] == strategy].sort_values("compression")
            x = np.concatenate([[1.0], d["compression"].to_numpy()])
            med = metric.scale * np.concatenate([[dense.loc[setting, "median"]], d["median"].to_numpy()])
            lo = metric.scale * np.concatenate([[dense.loc[setting, "min"]], d["min"].to_numpy()])
            hi = metric.scale * np.concatenate([[dense.loc[setting, "max"]], d["max"].to_numpy()])
            c = styles.color[strategy]
            ax.plot(x, med, marker="o", ms=3.5, color=c, label=f"{styles.label[strategy]} (n={d['n'].max()})")
            ax.fill_between(x, lo, hi, color=c, alpha=0.18, lw=0)
        _dense_band(ax, dense.loc[setting], metric)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.set_xlabel("compression ratio (all parameters / non-zero), log scale")
        ax.set_ylabel(metric.axis_label())
        title = f"Test {metric.name} vs compression: median over seeds, min–max shaded"
        ax.set_title(panel_title(title, setting, subtitle), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if metric.higher_is_better else "upper left")
    return fig


def accuracy_vs_budget(
    chosen_all: pd.DataFrame,
    dense: pd.DataFrame,
    files: ReportFiles,
    metric: ReportMetric,
    styles: StrategyStyles,
    subtitle: str = "",
) -> list[Path]:
    """One panel per (setting, sparsity): test metric against the retraining budget t."""
    panels = chosen_all.groupby(["setting", LEVEL])
    fig, axes = grid(panels.ngroups)
    for ax, ((setting, level), d) in zip(axes, panels, strict=True):
        for strategy in styles.ordered(d["strategy"]):
            g = d[d["strategy"] == strategy].groupby("budget")[f"test_{metric.name}"]
            x = np.array(sorted(g.groups))
            c, k = styles.color[strategy], metric.scale
            ax.plot(x, k * g.median().loc[x], marker="o", ms=3.5, color=c, label=styles.label[strategy])
            ax.fill_between(x, k * g.min().loc[x], k * g.max().loc[x], color=c, alpha=0.18, lw=0)
        _dense_band(ax, dense.loc[setting], metric)
        comp = d["compression"].mean()
        title = f"Sparsity {100 * level:.1f}% ({comp:.2f}×): test {metric.name} vs budget"
        ax.set_title(panel_title(title, setting, subtitle), fontsize=10)
        ax.set_xticks(sorted(d["budget"].unique()))
        ax.set_xlabel("retraining budget t (epochs)")
        ax.set_ylabel(metric.axis_label())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return save(fig, files, BUDGET_FIGURE)


MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]


def search_cost_figure(
    costs: pd.DataFrame,
    dense_costs: pd.DataFrame,
    dense: pd.DataFrame,
    cost: str,
    metric: ReportMetric,
    styles: StrategyStyles,
    subtitle: str = "",
) -> plt.Figure:
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
    retraining (right of it), which the top axis counts in dense stages (2 = as much
    retraining as the dense stage) and report.md's search-cost table lists. At equal budget
    the strategies share their x values: the figure then compares accuracy at equal cost.

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
    fig, axes = grid(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        s = costs.xs(setting, level="setting").reset_index()
        _search_cost_panel(ax, s, float(dense_costs.loc[setting, cost]), dense.loc[setting], cost, metric, styles)
        title = f"Test {metric.name} vs search cost: median over seeds, min–max shaded"
        ax.set_title(panel_title(title, setting, subtitle), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    return fig


def _search_cost_panel(
    ax: plt.Axes,
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
    _dense_band(ax, d_row, metric)
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
    ax: plt.Axes, lines: list[tuple], col: str, x_dense: float, d_row: pd.Series, c: str, label: str, k: float
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


def _cost_axes(ax: plt.Axes, cost: str, x_dense: float, x_max: float) -> None:
    """The log cost axis and, on top, the same cost in dense stages. Our own ticks, minor ones
    unlabelled: on a log axis spanning less than a decade matplotlib labels every minor tick,
    and "3×10¹¹4×10¹¹" ran into each other."""
    ax.set_xscale("log")
    ax.set_xticks(_cost_ticks(x_dense, x_max))
    ax.xaxis.set_major_formatter(FuncFormatter(_sci if cost == "train_flops" else lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    top = ax.secondary_xaxis("top", functions=(lambda v, d=x_dense: v / d, lambda v, d=x_dense: v * d))
    top.set_xlabel("in dense stages (retraining beyond the dense stage = value − 1)", fontsize=8)
    top.set_xticks(_cost_ticks(1.0, x_max / x_dense))
    top.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
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
    return save(fig, files, SEARCH_COST_FIGURE)


def layer_sparsity(masks: pd.DataFrame, files: ReportFiles, styles: StrategyStyles, subtitle: str = "") -> list[Path]:
    """Grouped bars: the final masks' sparsity per prunable layer, one bar per strategy (mean
    over the jobs at the sweep's highest target sparsity)."""
    settings = list(masks["setting"].unique())
    fig, axes = grid(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        m = masks[masks["setting"] == setting]
        layers = list(dict.fromkeys(m["layer"]))
        strategies = styles.ordered(m["strategy"])
        width = 0.8 / len(strategies)
        for i, strategy in enumerate(strategies):
            mean = m[m["strategy"] == strategy].groupby("layer")["sparsity"].mean().reindex(layers)
            ax.bar(
                np.arange(len(layers)) + (i - (len(strategies) - 1) / 2) * width,
                100 * mean,
                width,
                color=styles.color[strategy],
                label=styles.label[strategy],
            )
        target = m["target"].max()
        ax.axhline(100 * target, color="black", lw=1, ls="--", label=f"target {100 * target:.1f}%")
        ax.set_xticks(np.arange(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("pruned weights in the layer (%)")
        ax.set_ylim(0, 100)
        jobs = m.groupby("strategy")["job"].nunique().max()
        title = f"Per-layer sparsity of the final masks (mean over {jobs} jobs per strategy)"
        ax.set_title(panel_title(title, setting, subtitle), fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(strategies) + 1)
    return save(fig, files, LAYER_FIGURE)


def layer_sparsity_by_round(
    masks: pd.DataFrame, files: ReportFiles, styles: StrategyStyles, subtitle: str = ""
) -> list[Path]:
    """One panel per (setting, strategy): each prunable layer's sparsity after every round
    (rounds/mask_<round>, mean over the jobs at the sweep's highest target), against the round's
    overall sparsity; a line per layer (gid ``"<layer>"``), the diagonal is a uniform pruning."""
    panels = list(masks.groupby(["setting", "strategy"], sort=False).groups)
    panels.sort(key=lambda p: (p[0], styles.ordered(masks["strategy"]).index(p[1])))
    fig, axes = grid(len(panels))
    for ax, (setting, strategy) in zip(axes, panels, strict=True):
        m = masks[(masks["setting"] == setting) & (masks["strategy"] == strategy)]
        overall = m.groupby("round")["overall"].mean()
        for layer in dict.fromkeys(m["layer"]):
            y = m[m["layer"] == layer].groupby("round")["sparsity"].mean().reindex(overall.index)
            ax.plot(100 * overall, 100 * y, marker="o", ms=3, label=layer, gid=layer)
        ax.plot([0, 100], [0, 100], color="black", lw=0.8, ls=":")
        ax.set_xlabel("sparsity of the prunable weights after the round (%)")
        ax.set_ylabel("pruned weights in the layer (%)")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        jobs = m["job"].nunique()
        ax.set_title(
            panel_title(f"{styles.label[strategy]}: per-layer sparsity by round ({jobs} jobs)", setting, subtitle),
            fontsize=10,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return save(fig, files, LAYER_BY_ROUND_FIGURE)


def mask_layer_sparsity(path: Path) -> dict[str, float]:
    """Sparsity of every prunable tensor in a saved mask (numpy: no torch needed)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        names = json.loads(meta["prunable"]) if "prunable" in meta else list(f.keys())
        shapes = bitpack.shapes(meta)  # every-round masks are packed at 1 bit per weight
        if shapes is not None:
            return {n: 1.0 - float(bitpack.unpack(f.get_tensor(n), shapes[n]).mean()) for n in names}
        return {n: 1.0 - float(f.get_tensor(n).mean()) for n in names}


def panel_title(text: str, setting: str, subtitle: str = "") -> str:
    lines = [text] + ([setting] if setting != "all" else []) + ([subtitle] if subtitle else [])
    return "\n".join(lines)
