"""prune_exp."""
