"""Hydra discovers launchers in the ``hydra_plugins`` namespace: prune_exp's fused launcher."""
