"""Sweep reports: collect every job of a sweep dir, compare the strategies, plot.

collect.py   job dirs -> tidy results (pandas) and the status of every expected job
arms.py      the arms compared: a gradual job as an arm of its own; one config per strategy name
tables.py    the statistics: budgets chosen on val, mean/std/median per cell, paired
             differences, the largest compression at or above dense accuracy, search cost
sections.py  the summary's markdown sections
plots.py     accuracy vs compression, vs budget, vs search cost; per-layer sparsity (matplotlib)
files.py     the report's files, by name: written atomically, never over a file it did not write
cli.py       report_sweep() (the Hydra callback calls it) and ``prune-exp-report``
"""

from prune_exp.report.cli import report_sweep

__all__ = ["report_sweep"]
