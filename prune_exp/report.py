"""Sweep report: collect every job's records with pandas and compare the strategies.

``report_sweep(dir)`` is what the Hydra callback runs when a multirun ends.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from prune_exp.atomic import write_text
from prune_exp.records import RECORDS_FILE, read_records

STRATEGY_ORDER = ["finetune", "weight_rewind", "lr_rewind", "lottery", "reinit", "none"]


def collect(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job x round, from every ``records.jsonl`` under ``sweep_dir``."""
    rows = [r for p in sorted(Path(sweep_dir).rglob(RECORDS_FILE)) for r in read_records(p)]
    return pd.DataFrame(rows)


def comparison_table(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per round: the sparsity, and ``metric`` per strategy as 'mean ± std (n)' over seeds."""
    stats = df.groupby(["round", "strategy"])[metric].agg(["mean", "std", "count"])
    cell = stats.apply(
        lambda s: f"{100 * s['mean']:.2f} ± {100 * (0 if pd.isna(s['std']) else s['std']):.2f} ({int(s['count'])})",
        axis=1,
    )
    table = cell.unstack("strategy")
    table = table[[s for s in STRATEGY_ORDER if s in table.columns]]
    sparsity = df.groupby("round")["sparsity"].mean()
    compression = df.groupby("round")["compression"].mean()
    table.insert(0, "compression", compression.map(lambda c: f"{c:.2f}x"))
    table.insert(0, "sparsity %", (100 * sparsity).map(lambda s: f"{s:.1f}"))
    return table


def report_sweep(sweep_dir: str | Path) -> pd.DataFrame | None:
    """Print the comparison (test accuracy %, mean ± std over seeds) and write summary.md."""
    sweep_dir = Path(sweep_dir)
    df = collect(sweep_dir)
    if df.empty:
        print(f"no {RECORDS_FILE} under {sweep_dir}: nothing to report")
        return None
    table = comparison_table(df)
    title = "Test accuracy (%) per strategy and round: mean ± std (n seeds); round 0 = dense"
    md = f"# Strategy comparison\n\n{title}\n\n{table.to_markdown()}\n"
    write_text(sweep_dir / "summary.md", md)
    print(f"\n{title}\n{table.to_string()}\n\nwritten: {sweep_dir / 'summary.md'}")
    return table
