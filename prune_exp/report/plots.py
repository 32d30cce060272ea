"""The paper's figures, with matplotlib (Agg: no display needed). Each is written as PNG and SVG.

Every figure is laid out the same way (``grid``, ``titles``, ``legend_below``), so that it reads
at its own size: one figure title says what it shows and the sweep's constant facts (the
subtitle: dataset, model, ...), once; each panel's title only what is its own (its setting,
strategy or sparsity), wrapped to its width; a legend under a panel sits under its x axis; and
matplotlib's constrained layout makes room for all of them, so that none runs into another.
The search-cost figure is in cost_figure.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator
from matplotlib.transforms import ScaledTranslation

from prune_exp.report.files import (
    BUDGET_FIGURE,
    COMPRESSION_FIGURE,
    FIGURE_FORMATS,
    LAYER_BY_ROUND_FIGURE,
    LAYER_FIGURE,
    ReportFiles,
)
from prune_exp.report.metric import ReportMetric
from prune_exp.report.styles import StrategyStyles
from prune_exp.report.tables import LEVEL
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


def dense_band(ax: plt.Axes, dense_row: pd.Series, m: ReportMetric) -> None:
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


PANEL_WIDTH, PANEL_HEIGHT = 6.2, 4.4  # inches, at most 3 panels a row
TITLE_SIZE, PANEL_TITLE_SIZE = 11, 10  # points


def grid(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of ``n`` panels, 3 a row at most, laid out by matplotlib's constrained layout:
    it makes room for the figure's title and every panel's title, axis labels and legend."""
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(PANEL_WIDTH * cols, PANEL_HEIGHT * rows + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def titles(fig: plt.Figure, axes: list[plt.Axes], what: str, subtitle: str, panels: list[str]) -> None:
    """The figure's title, once: ``what`` it shows, then the sweep's constant facts (``subtitle``);
    each panel's title only what is its own (``panels``: its setting, strategy, sparsity; '' for
    none). Each is wrapped to the width it has, so that the titles of panels side by side do not
    run into each other."""
    fig.suptitle(wrap("\n".join(t for t in (what, subtitle) if t), fig.get_figwidth(), TITLE_SIZE), fontsize=TITLE_SIZE)
    for ax, text in zip(axes, panels, strict=True):
        if text:
            ax.set_title(wrap(text, 0.9 * PANEL_WIDTH, PANEL_TITLE_SIZE), fontsize=PANEL_TITLE_SIZE)


def setting_title(setting: str) -> str:
    """A panel's setting in its title: '' where the sweep has one setting ("all")."""
    return "" if setting == "all" else setting


def wrap(text: str, inches: float, size: float) -> str:
    """``text`` in lines that fit ``inches`` at ``size`` points (0.55 em a character: DejaVu
    Sans's average, a little over), each line broken after a ", " or at a " · " where it can, so
    that a setting's key=value and a subtitle's facts stay whole, else at a space."""
    chars = max(int(inches * 72 / (0.55 * size)), 20)
    return "\n".join(wrapped for line in text.split("\n") for wrapped in _wrap_line(line, chars))


def _wrap_line(line: str, chars: int) -> list[str]:
    """``wrap``'s lines of one line of text, at most ``chars`` characters each where they can be."""
    out, current = [], ""
    for part in re.findall(r".+?(?:, | · |$)", line):
        for piece in [part] if len(part.rstrip()) <= chars else re.findall(r"\S+\s*", part):
            if current.strip() and len(current) + len(piece.rstrip()) > chars:
                out.append(current.rstrip().removesuffix(" ·"))
                current = ""
            current += piece
    return [*out, current.rstrip()]


def legend_below(ax: plt.Axes, **kw) -> None:
    """The panel's legend under its x axis, its tick labels and label, whatever their height
    (a fraction of the axes would run into the label of a short panel), centred."""
    fig = ax.figure
    xaxis = ax.xaxis.get_tightbbox(fig.canvas.get_renderer())
    below = (ax.bbox.y0 - xaxis.y0) / fig.dpi + 4 / 72 if xaxis is not None else 0.1  # inches
    offset = ax.transAxes + ScaledTranslation(0, -below, fig.dpi_scale_trans)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=offset, **kw)


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
    what = f"Test {metric.name} vs compression: median over seeds, min–max shaded"
    titles(fig, axes, what, subtitle, [setting_title(s) for s in settings])
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
        dense_band(ax, dense.loc[setting], metric)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.set_xlabel("compression ratio (all parameters / non-zero), log scale")
        ax.set_ylabel(metric.axis_label())
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
    names = [
        "\n".join(
            t for t in (f"sparsity {100 * level:.1f}% ({d['compression'].mean():.2f}×)", setting_title(setting)) if t
        )
        for (setting, level), d in panels
    ]
    titles(
        fig, axes, f"Test {metric.name} vs the retraining budget t: median over seeds, min–max shaded", subtitle, names
    )
    for ax, ((setting, _), d) in zip(axes, panels, strict=True):
        for strategy in styles.ordered(d["strategy"]):
            g = d[d["strategy"] == strategy].groupby("budget")[f"test_{metric.name}"]
            x = np.array(sorted(g.groups))
            c, k = styles.color[strategy], metric.scale
            ax.plot(x, k * g.median().loc[x], marker="o", ms=3.5, color=c, label=styles.label[strategy])
            ax.fill_between(x, k * g.min().loc[x], k * g.max().loc[x], color=c, alpha=0.18, lw=0)
        dense_band(ax, dense.loc[setting], metric)
        ax.set_xticks(sorted(d["budget"].unique()))
        ax.set_xlabel("retraining budget t (epochs)")
        ax.set_ylabel(metric.axis_label())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return save(fig, files, BUDGET_FIGURE)


def layer_sparsity(masks: pd.DataFrame, files: ReportFiles, styles: StrategyStyles, subtitle: str = "") -> list[Path]:
    """Grouped bars: the final masks' sparsity per prunable layer, one bar per strategy (mean
    over its jobs at the sweep's highest target sparsity, n in the legend)."""
    settings = list(masks["setting"].unique())
    fig, axes = grid(len(settings))
    what = "Per-layer sparsity of the final masks at the highest target: mean over each strategy's jobs"
    titles(fig, axes, what, subtitle, [setting_title(s) for s in settings])
    for ax, setting in zip(axes, settings, strict=True):
        m = masks[masks["setting"] == setting]
        layers = list(dict.fromkeys(m["layer"]))
        strategies = styles.ordered(m["strategy"])
        width = 0.8 / len(strategies)
        for i, strategy in enumerate(strategies):
            own = m[m["strategy"] == strategy]
            ax.bar(
                np.arange(len(layers)) + (i - (len(strategies) - 1) / 2) * width,
                100 * own.groupby("layer")["sparsity"].mean().reindex(layers),
                width,
                color=styles.color[strategy],
                label=f"{styles.label[strategy]} (n={own['job'].nunique()})",
            )
        target = m["target"].max()
        ax.axhline(100 * target, color="black", lw=1, ls="--", label=f"target {100 * target:.1f}%")
        ax.set_xticks(np.arange(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("pruned weights in the layer (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3, axis="y")
        legend_below(ax, fontsize=8, ncol=2)
    return save(fig, files, LAYER_FIGURE)


def layer_sparsity_by_round(
    masks: pd.DataFrame, files: ReportFiles, styles: StrategyStyles, subtitle: str = ""
) -> list[Path]:
    """One panel per (setting, strategy): each prunable layer's sparsity after every round
    (rounds/mask_<round>, mean over the jobs at the sweep's highest target), against the round's
    overall sparsity; a line per layer (gid ``"<layer>"``), the diagonal is a uniform pruning.
    The figure's title says so, once; each panel's title is its strategy (and setting)."""
    panels = list(masks.groupby(["setting", "strategy"], sort=False).groups)
    panels.sort(key=lambda p: (p[0], styles.ordered(masks["strategy"]).index(p[1])))
    fig, axes = grid(len(panels))
    jobs = {p: masks.loc[(masks["setting"] == p[0]) & (masks["strategy"] == p[1]), "job"].nunique() for p in panels}
    names = [
        "\n".join(t for t in (f"{styles.label[st]} ({jobs[(se, st)]} jobs)", setting_title(se)) if t)
        for se, st in panels
    ]
    what = "Per-layer sparsity after each round, mean over the jobs at the highest target (dotted: every layer alike)"
    titles(fig, axes, what, subtitle, names)
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
