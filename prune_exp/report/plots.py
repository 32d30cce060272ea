"""The paper's figures, with matplotlib (Agg: no display needed). Each is written as PNG and SVG."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator

from prune_exp.report.tables import LEVEL, ordered

COLORS = {
    "finetune": "tab:blue",
    "weight_rewind": "tab:orange",
    "lr_rewind": "tab:green",
    "lottery": "tab:red",
    "reinit": "tab:purple",
    "none": "tab:gray",
}
LABELS = {
    "finetune": "fine-tuning (FT)",
    "weight_rewind": "weight rewinding (WR)",
    "lr_rewind": "LR rewinding (LRR)",
    "lottery": "lottery ticket (θ₀)",
    "reinit": "random reinit",
    "none": "no retraining",
}


def _save(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    paths = [out_dir / f"{name}.{ext}" for ext in ("png", "svg")]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def _dense_band(ax: plt.Axes, dense_row: pd.Series) -> None:
    lo, hi = 100 * dense_row["min"], 100 * dense_row["max"]
    ax.axhspan(lo, hi, color="black", alpha=0.08, lw=0)
    ax.axhline(
        100 * dense_row["mean"],
        color="black",
        lw=1,
        ls="--",
        label=f"dense {100 * dense_row['mean']:.2f}% (band: min–max, n={int(dense_row['n'])})",
    )


def _grid(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def accuracy_vs_compression(
    stats: pd.DataFrame, dense: pd.DataFrame, out_dir: Path, metric: str, subtitle: str = ""
) -> list[Path]:
    """Median over seeds per strategy against the compression ratio (log2), min–max shaded."""
    settings = list(stats.index.get_level_values("setting").unique())
    fig, axes = _grid(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        s = stats.xs(setting, level="setting").reset_index()
        for strategy in ordered(s["strategy"]):
            d = s[s["strategy"] == strategy].sort_values("compression")
            x = np.concatenate([[1.0], d["compression"].to_numpy()])
            med = 100 * np.concatenate([[dense.loc[setting, "median"]], d["median"].to_numpy()])
            lo = 100 * np.concatenate([[dense.loc[setting, "min"]], d["min"].to_numpy()])
            hi = 100 * np.concatenate([[dense.loc[setting, "max"]], d["max"].to_numpy()])
            c = COLORS.get(strategy)
            ax.plot(x, med, marker="o", ms=3.5, color=c, label=f"{LABELS.get(strategy, strategy)} (n={d['n'].max()})")
            ax.fill_between(x, lo, hi, color=c, alpha=0.18, lw=0)
        _dense_band(ax, dense.loc[setting])
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.set_xlabel("compression ratio (all parameters / non-zero), log scale")
        ax.set_ylabel(f"test {metric} (%)")
        ax.set_title(
            _title("Accuracy vs compression: median over seeds, min–max shaded", setting, subtitle), fontsize=10
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    return _save(fig, out_dir, "accuracy_vs_compression")


def accuracy_vs_budget(
    chosen_all: pd.DataFrame, dense: pd.DataFrame, out_dir: Path, metric_col: str, metric: str, subtitle: str = ""
) -> list[Path]:
    """One panel per (setting, sparsity): test metric against the retraining budget t."""
    panels = chosen_all.groupby(["setting", LEVEL])
    fig, axes = _grid(panels.ngroups)
    for ax, ((setting, level), d) in zip(axes, panels, strict=True):
        for strategy in ordered(d["strategy"]):
            g = d[d["strategy"] == strategy].groupby("budget")[metric_col]
            x = np.array(sorted(g.groups))
            c = COLORS.get(strategy)
            ax.plot(x, 100 * g.median().loc[x], marker="o", ms=3.5, color=c, label=LABELS.get(strategy, strategy))
            ax.fill_between(x, 100 * g.min().loc[x], 100 * g.max().loc[x], color=c, alpha=0.18, lw=0)
        _dense_band(ax, dense.loc[setting])
        comp = d["compression"].mean()
        title = f"Sparsity {100 * level:.1f}% ({comp:.2f}×): accuracy vs budget"
        ax.set_title(_title(title, setting, subtitle), fontsize=10)
        ax.set_xticks(sorted(d["budget"].unique()))
        ax.set_xlabel("retraining budget t (epochs)")
        ax.set_ylabel(f"test {metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _save(fig, out_dir, "accuracy_vs_budget")


def layer_sparsity(masks: pd.DataFrame, out_dir: Path, subtitle: str = "") -> list[Path]:
    """Grouped bars: the final masks' sparsity per prunable layer, one bar per strategy (mean
    over the jobs at the sweep's highest target sparsity)."""
    settings = list(masks["setting"].unique())
    fig, axes = _grid(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        m = masks[masks["setting"] == setting]
        layers = list(dict.fromkeys(m["layer"]))
        strategies = ordered(m["strategy"])
        width = 0.8 / len(strategies)
        for i, strategy in enumerate(strategies):
            mean = m[m["strategy"] == strategy].groupby("layer")["sparsity"].mean().reindex(layers)
            ax.bar(
                np.arange(len(layers)) + (i - (len(strategies) - 1) / 2) * width,
                100 * mean,
                width,
                color=COLORS.get(strategy),
                label=LABELS.get(strategy, strategy),
            )
        target = m["target"].max()
        ax.axhline(100 * target, color="black", lw=1, ls="--", label=f"target {100 * target:.1f}%")
        ax.set_xticks(np.arange(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("pruned weights in the layer (%)")
        ax.set_ylim(0, 100)
        jobs = m.groupby("strategy")["job"].nunique().max()
        title = f"Per-layer sparsity of the final masks (mean over {jobs} jobs per strategy)"
        ax.set_title(_title(title, setting, subtitle), fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(strategies) + 1)
    return _save(fig, out_dir, "layer_sparsity")


def mask_layer_sparsity(path: Path) -> dict[str, float]:
    """Sparsity of every prunable tensor in a saved mask (numpy: no torch needed)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        names = json.loads(meta["prunable"]) if "prunable" in meta else list(f.keys())
        return {n: 1.0 - float(f.get_tensor(n).mean()) for n in names}


def _title(text: str, setting: str, subtitle: str = "") -> str:
    lines = [text] + ([setting] if setting != "all" else []) + ([subtitle] if subtitle else [])
    return "\n".join(lines)
