"""Each round's diagnostics (store/columns.DIAGNOSTICS: what its pruning did, the LR it retrained
with) in the report: a table per setting, medians over seeds, and a figure of each strategy's LR
over its first and last round."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from prune_exp.report.files import LR_FIGURE, ReportFiles
from prune_exp.report.styles import StrategyStyles
from prune_exp.store.columns import DIAGNOSTICS, LR_CURVE

TABLE = tuple(c for c in DIAGNOSTICS if c not in ("lr_rule", LR_CURVE))  # one number per round


def diagnostics_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per setting, strategy, budget and round: the median over the jobs (seeds) of every
    numeric diagnostic the records have; empty for records without them."""
    cols = [c for c in TABLE if c in df.columns and df[c].notna().any()]
    rounds = df[df["round"] > 0]
    if not cols or rounds.empty:
        return pd.DataFrame()
    return rounds.groupby(["setting", "strategy", "budget", "round"])[cols].median()


def diagnostics_section(table: pd.DataFrame, setting: str, styles: StrategyStyles) -> list[str]:
    """The setting's table of diagnostics per strategy and round."""
    if table.empty or setting not in table.index.get_level_values("setting"):
        return []
    t = table.xs(setting, level="setting")
    budgets = t.index.get_level_values("budget").nunique() > 1
    rows = []
    for strategy in styles.ordered(t.index.get_level_values("strategy")):
        for (budget, round_), r in t.xs(strategy, level="strategy").iterrows():
            row = {"strategy": styles.short[strategy], **({"t": str(int(budget))} if budgets else {})}
            rows.append({**row, "round": str(int(round_)), **{c: _number(r[c]) for c in t.columns}})
    return [
        "### Each round's pruning and the LR it retrained with (medians over seeds)",
        "",
        "`prune_fraction`: of the weights left, the fraction the round pruned; `norm_drop`: ‖W − W_p‖ / ‖W‖ "
        "of that pruning; `pruned_loss_increase`: the loss's relative increase by it; `sign_flips`: of the "
        "weights kept, the fraction whose sign differs from the dense model's after the round; `lr_start`, "
        "`lr_peak`, `lr_end`: the round's LR (docs/records.md).",
        "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
        "",
    ]


def _number(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def lr_figure(df: pd.DataFrame, files: ReportFiles, styles: StrategyStyles, subtitle: str = "") -> list[Path]:
    """Each strategy's LR over its first round, and over its last (dashed) where that differs
    (a rule's peak), median over the jobs, at its largest budget; [] for records without LR curves."""
    from prune_exp.report import plots as P

    if LR_CURVE not in df:
        return []
    rows = df[(df["round"] > 0) & df[LR_CURVE].map(lambda c: isinstance(c, list) and len(c) > 1)]
    if rows.empty:
        return []
    settings = list(rows["setting"].unique())
    fig, axes = P.grid(len(settings))
    what = "The LR over a round, median over seeds (dashed: the last round, where it differs)"
    P.titles(fig, axes, what, subtitle, [P.setting_title(s) for s in settings])
    for ax, setting in zip(axes, settings, strict=True):
        s = rows[rows["setting"] == setting]
        for strategy in styles.ordered(s["strategy"]):
            st = s[s["strategy"] == strategy]
            st = st[st["budget"] == st["budget"].max()]
            first, last = st["round"].min(), st["round"].max()  # (one round: the same)
            (x, y), (x2, y2) = (_median_curve(st[st["round"] == r]) for r in (first, last))
            adapts = not np.array_equal(y, y2)  # a rule's peak, or a schedule that differs by round
            name = f"{styles.label[strategy]} (t={int(st['budget'].iloc[0])})"
            ax.plot(x, y, color=styles.color[strategy], label=f"{name}, round {int(first)}" if adapts else name)
            if adapts:
                ax.plot(x2, y2, ls="--", color=styles.color[strategy], label=f"{name}, round {int(last)}")
        ax.set_xlabel("fraction of the round's steps")
        ax.set_ylabel("LR")
        ax.grid(alpha=0.3)
        P.legend_below(ax, fontsize=7, ncol=2)
    return P.save(fig, files, LR_FIGURE)


def _median_curve(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The median over ``rows`` (one round of a strategy's jobs) of their LR curves, at the
    fractions of the round's steps where the records took them (columns.LR_CURVE)."""
    y = np.median(np.array(rows[LR_CURVE].tolist(), dtype=float), axis=0)
    last = max(int(rows["retrain_steps"].iloc[0]) - 1, 1)
    return np.array([round(k * last / (len(y) - 1)) / last for k in range(len(y))]), y
