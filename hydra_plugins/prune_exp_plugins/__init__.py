"""Hydra discovers sweepers and launchers in the ``hydra_plugins`` namespace: prune_exp's sweeper
(sweeper.py: every job composed once and checked before the first starts) and its fused
launchers (fused_launcher.py)."""
