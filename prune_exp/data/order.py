"""The training order: which examples each rank sees in each epoch, and how many optimizer
steps an epoch takes when its batches are split over the ranks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

from prune_exp.seeds import derive_seed


def epoch_steps(examples: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps in one epoch of ``examples`` at ``batch_size`` split over ``world_size``
    processes (each rank's last, partial batch included)."""
    per_rank = -(-examples // world_size)
    return -(-per_rank // (batch_size // world_size))


class EpochShuffle(Sampler[int]):
    """A random order that is a pure function of (seed, epoch).

    Lightning calls ``set_epoch`` at the start of every epoch, so a run resumed at epoch k
    sees exactly the order an uninterrupted run would have seen. Under DDP, rank r of w
    takes every w-th index from r of the same order (padded with its start to a multiple of
    w, like DistributedSampler): the w ranks' batches of B/w together are the one-process
    run's batch of B.
    """

    def __init__(
        self, n: int, seed: int, rank: int = 0, world_size: int = 1, on_epoch: Callable[[int], None] | None = None
    ) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.rank, self.world_size = rank, world_size
        self.on_epoch = on_epoch  # e.g. the augmentation reseeds itself per epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def __len__(self) -> int:
        return -(-self.n // self.world_size)

    def indices(self) -> torch.Tensor:
        """This rank's order for the current epoch, as a tensor."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=g)
        if self.world_size > 1:
            order = torch.cat([order, order[: len(self) * self.world_size - self.n]])[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[int]:
        yield from self.indices().tolist()  # a generator: the order is drawn at the first next()
