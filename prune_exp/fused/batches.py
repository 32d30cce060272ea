"""A fused group's training batches: at step k, batch k of every arm's own loader (its own
seed's order and augmentation), stacked along a new leading dim."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from prune_exp.data.base import TensorBatches, TensorDataset

Batch = tuple[torch.Tensor, torch.Tensor]


def set_epoch(loader: object, epoch: int) -> None:
    """What Lightning does to a train loader at every epoch start: its sampler's (and batch
    sampler's) ``set_epoch``, which draws the epoch's order (data.order.EpochShuffle)."""
    for attr in ("sampler", "batch_sampler"):
        sampler = getattr(loader, attr, None)
        if callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(epoch)


def in_memory(loader: Any) -> TensorDataset | None:
    """The loader's TensorDataset when it is a plain in-process DataLoader over whole batches of
    indices (data.base.TensorDataModule's), else None."""
    if not isinstance(loader, DataLoader) or loader.num_workers or loader.batch_size is not None:
        return None
    ok = isinstance(loader.dataset, TensorDataset) and isinstance(loader.sampler, TensorBatches)
    return loader.dataset if ok else None


def share_equal_data(datasets: Sequence[TensorDataset]) -> list[int]:
    """Point every dataset whose tensors equal an earlier one's at that one's tensors (one copy on
    the device instead of N); for each dataset, the index of the one it now shares."""
    owners: list[int] = []
    for i, ds in enumerate(datasets):
        same = (
            j
            for j in sorted(set(owners))
            if datasets[j].x.shape == ds.x.shape
            and datasets[j].x.device == ds.x.device
            and torch.equal(datasets[j].x, ds.x)
            and torch.equal(datasets[j].y, ds.y)
        )
        owner = next(same, i)
        ds.x, ds.y = datasets[owner].x, datasets[owner].y
        owners.append(owner)
    return owners


class FusedBatches:
    """The arms' batches in lockstep. Lightning reaches ``set_epoch`` through ``sampler``, as
    with a DataLoader.

    When every arm's loader is an in-memory one over the same examples (each arm's own order),
    a step's batches are one index op on the shared tensors, each arm's augmentation applied to
    its own slice: the same values as N fetches and a stack, without N DataLoader steps."""

    def __init__(self, loaders: Sequence[Any]) -> None:
        self.loaders = list(loaders)
        self.sampler = self
        datasets = [in_memory(loader) for loader in self.loaders]
        self._shared: TensorDataset | None = None
        if datasets and all(ds is not None for ds in datasets):
            if set(share_equal_data(datasets)) == {0}:
                self._shared, self._transforms = datasets[0], [ds.transform for ds in datasets]

    def set_epoch(self, epoch: int) -> None:
        for loader in self.loaders:
            set_epoch(loader, epoch)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[Batch]:
        return self._gathered() if self._shared is not None else self._stacked()

    def _stacked(self) -> Iterator[Batch]:
        for batches in zip(*self.loaders, strict=True):
            xs, ys = zip(*batches, strict=True)
            yield torch.stack(xs), torch.stack(ys)

    def _gathered(self) -> Iterator[Batch]:
        # Every arm's whole epoch of batches drawn at the first step (a generator: a resumed run
        # draws the resumed epoch's), moved to the device once: no host-device copy per step.
        ds = self._shared
        arms = [list(loader.sampler) for loader in self.loaders]
        sizes = [len(b) for b in arms[0]]
        if any([len(b) for b in batches] != sizes for batches in arms):
            raise ValueError("the fused arms' epochs differ in their batches' sizes")
        order = torch.stack([torch.cat(batches) for batches in arms]).to(ds.x.device)  # [N, examples]
        for t in order.split(sizes, dim=1):  # [N, B]
            x, y = ds.x[t], ds.y[t]
            if any(f is not None for f in self._transforms):
                x = torch.stack([f(xi) if f is not None else xi for f, xi in zip(self._transforms, x, strict=True)])
            yield x, y
