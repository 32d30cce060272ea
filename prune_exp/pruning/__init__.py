"""Masks, scoring criteria, sparsity structures and the pruner that turns them into a mask."""
