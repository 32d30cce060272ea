"""Sweep reports: collect every job of a sweep dir, compare the strategies, plot.

collect.py  job dirs -> tidy results (pandas) and the status of every expected job
tables.py   the statistics: budgets chosen on val, mean/std/median per cell, paired
            differences, the largest compression at or above dense accuracy, search cost
plots.py    accuracy vs compression, vs budget, vs search cost; per-layer sparsity (matplotlib)
cli.py      report_sweep() (the Hydra callback calls it) and ``prune-exp-report``
"""

from prune_exp.report.cli import report_sweep

__all__ = ["report_sweep"]
