"""Every fused arm measured on its own split at once: one stacked forward per batch of the
arms' loaders, each arm's loss and metrics as its unfused job's evaluation measures them
(lit/module.PruneModule.evaluate, Lightning's validation loop)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch.func import vmap

from prune_exp.config import LOSS
from prune_exp.fused.batches import Batch, in_memory, share_equal_data
from prune_exp.fused.stack import StackedNets
from prune_exp.lit.task import Task


class ArmsEvaluation:
    """``loaders[i]``: arm i's batches of the split (an arm's own loader, as its job has it).
    When every arm's loader is an in-memory one over the same examples, the examples are read
    once and every arm sees the same batch (no stacked copy)."""

    def __init__(self, stacked: StackedNets, task: Task, loaders: Sequence[Any]) -> None:
        if len(loaders) != stacked.arms:
            raise ValueError(f"{len(loaders)} loaders for {stacked.arms} stacked arms")
        self.stacked, self.task, self.loaders = stacked, task, list(loaders)
        datasets = [in_memory(loader) for loader in self.loaders]
        shared = all(ds is not None for ds in datasets) and set(share_equal_data(datasets)) == {0}  # type: ignore[arg-type]
        self.shared = datasets[0] if shared else None
        self._loss_sum = vmap(functools.partial(task.loss, reduction="sum"))
        # each arm's metrics, built once (a MetricCollection takes ~3 ms to build: at every
        # epoch of every arm, that was a tenth of a fused main job), reset at each use
        self._metrics = [task.collection() for _ in range(stacked.arms)]

    def _batches(self) -> Iterator[Batch]:
        n = self.stacked.arms
        if self.shared is not None:  # one index op a batch, as the loader's (its sampler's batches)
            for t in self.loaders[0].sampler:
                x, y = self.shared[t]
                yield x.expand(n, *x.shape), y.expand(n, *y.shape)
            return
        for batches in zip(*self.loaders, strict=True):
            xs, ys = zip(*batches, strict=True)
            yield torch.stack(xs), torch.stack(ys)

    @torch.no_grad()
    def __call__(self, device: torch.device, context: AbstractContextManager | None = None) -> list[dict[str, float]]:
        """Each arm's metrics and loss (mean over the split's examples), keyed by their names,
        with the stacked network in eval mode (then as it was); ``context``: the run's
        precision (autocast)."""
        holder, n = self.stacked.holder, self.stacked.arms
        was_training = holder.training
        holder.eval()
        metrics = [m.to(device) for m in self._metrics]
        for m in metrics:
            m.reset()
        loss_sum, count = torch.zeros(n, device=device), 0
        try:
            for x, y in self._batches():
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with context or nullcontext():
                    out = self.stacked(x).float()
                loss_sum += self._loss_sum(out, y)
                count += y.shape[1]
                for i, m in enumerate(metrics):
                    m.update(self.task.preds(out[i], y[i]), y[i])
        finally:
            holder.train(was_training)
        losses = (loss_sum / max(count, 1)).tolist()
        measured = [{k: float(v) for k, v in m.compute().items()} for m in metrics]
        return [{**arm, LOSS: loss} for arm, loss in zip(measured, losses, strict=True)]
