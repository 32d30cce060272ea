"""``python -m prune_exp`` is the same Hydra app as ``prune-exp``."""

from prune_exp.app.run import cli

cli()
