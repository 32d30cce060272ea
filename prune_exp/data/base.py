"""In-memory tensor datamodules: the base every dataset that fits in memory builds on.

The whole split lives in one tensor on the training device (uint8 for images); a batch is
one index op on that device, then a batch transform there (normalization, and for
training the augmentation, a whole batch at a time). The DataLoader is only the batching
shell Lightning expects: no worker processes, no per-example Python.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

BatchTransform = Callable[[torch.Tensor], torch.Tensor]


class TensorDataset(Dataset):
    """(x, y) tensors; ``__getitems__`` fetches a whole batch with one index op on the tensors'
    device and applies ``transform`` to it, no collate."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: BatchTransform | None = None) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        self.x, self.y, self.transform = x, y, transform

    def to(self, device: torch.device) -> None:
        self.x, self.y = self.x.to(device), self.y.to(device)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(i, torch.Tensor):  # a whole batch of indices (TensorBatches)
            return self.__getitems__(i)
        x, y = self.__getitems__([i])
        return x[0], y[0]

    def __getitems__(self, idx: list[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(idx, device=self.x.device)
        x = self.x[t]
        return (self.transform(x) if self.transform is not None else x), self.y[t]


def _identity(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


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
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        if self.world_size > 1:
            order = torch.cat([order, order[: len(self) * self.world_size - self.n]])[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[int]:
        yield from self.indices().tolist()  # a generator: the order is drawn at the first next()


class TensorBatches(Sampler[torch.Tensor]):
    """Batches of indices as tensors: ``order``'s indices (range(n) when None) cut into
    ``batch_size`` pieces, the last one partial. A DataLoader built with it and
    ``batch_size=None`` hands each piece to ``TensorDataset.__getitem__`` whole: one index op
    per batch, no list of Python ints. Lightning's ``set_epoch`` reaches ``order`` through it."""

    def __init__(self, n: int, batch_size: int, order: EpochShuffle | None = None) -> None:
        self.n, self.batch_size, self.order = n, batch_size, order

    def set_epoch(self, epoch: int) -> None:
        if self.order is not None:
            self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-(len(self.order) if self.order is not None else self.n) // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        # A generator, so the order is drawn at the first batch, not when the iterator is made:
        # a run resumed from a checkpoint gets its DataLoader iterator before Lightning calls
        # set_epoch, and must still see the resumed epoch's order.
        idx = self.order.indices() if self.order is not None else torch.arange(self.n)
        yield from idx.split(self.batch_size)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n) into (rest, held_out) with ``round(n * fraction)`` held out."""
    perm = np.random.default_rng(seed).permutation(n)
    k = round(n * fraction)
    if not 0 < k < n:
        raise ValueError(f"a fraction of {fraction} of {n} examples leaves an empty split")
    return np.sort(perm[k:]), np.sort(perm[:k])


class SplitDataModule(pl.LightningDataModule):
    """What every datamodule shares: train / val / test splits, the training order
    (:class:`EpochShuffle`, sharded under DDP) and the steps per epoch the LR schedule is laid
    out in. Subclasses say how a split becomes a DataLoader (``_make_loader``)."""

    def __init__(self, *, batch_size: int, eval_batch_size: int, shuffle_seed: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.shuffle_seed = shuffle_seed  # the run's seed: the data order differs per seed
        self.world_size = 1  # DDP processes; batch_size is split across them (set by the job)
        self.train: Any = None
        self.val: Any = None
        self.test: Any = None

    @abstractmethod
    def _make_loader(self, ds: Any, batch_size: int, sampler: Sampler | None) -> DataLoader:
        """A DataLoader over ``ds`` in ``sampler``'s order (None: in order)."""

    def reseed(self, epoch: int, rank: int) -> None:
        """Called at the start of every training epoch: seed the augmentation from
        (seed, epoch, rank), so that a resumed run augments exactly like an uninterrupted one."""

    def _loader(self, ds: Any, batch_size: int, shuffle: bool) -> DataLoader:
        """Training: this rank's share of the shuffled order. Evaluation: every example, on
        every rank (each rank measures the same model on the whole split)."""
        if ds is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        sampler = None
        if shuffle:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            sampler = EpochShuffle(
                len(ds), self.shuffle_seed, rank, self.world_size, on_epoch=lambda e: self.reseed(e, rank)
            )
            batch_size //= self.world_size
        return self._make_loader(ds, batch_size, sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.batch_size, shuffle=True)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Every loader here yields an (x, y) pair: moved directly (a no-op for the in-memory
        # datasets, already on the device), not through Lightning's generic walk of the batch.
        if isinstance(batch, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in batch):
            return type(batch)(t.to(device, non_blocking=device.type == "cuda") for t in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    @abstractmethod
    def _scoring_dataset(self) -> Any:
        """The training examples with the evaluation transform (no augmentation)."""

    def scoring_batches(self) -> DataLoader:
        """Training data for data-driven criteria (Taylor): the whole batch, the same order on
        every rank and in every round (seed, epoch 0), no augmentation."""
        if self.train is None:
            raise RuntimeError("call setup() first")
        ds = self._scoring_dataset()
        return self._make_loader(ds, self.batch_size, EpochShuffle(len(ds), self.shuffle_seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, self.eval_batch_size, shuffle=False)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one training epoch (the last, partial batch included)."""
        if self.train is None:
            raise RuntimeError("call setup() first")
        per_rank = -(-len(self.train) // self.world_size)
        return -(-per_rank // (self.batch_size // self.world_size))


class TensorDataModule(SplitDataModule):
    """Loads (x_train, y_train, x_test, y_test) once, carves val from train, serves tensors."""

    def __init__(
        self,
        *,
        batch_size: int,
        eval_batch_size: int,
        val_fraction: float,
        split_seed: int,
        data_dir: str = "data",
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, shuffle_seed=shuffle_seed)
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.data_dir = data_dir

    # ---- what each dataset provides
    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, known from the config alone (no data loaded)."""

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Number of classes, known from the config alone."""

    @abstractmethod
    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return features (float, or uint8 images N x C x H x W) and int labels:
        x_train, y_train, x_test, y_test."""

    def train_transform(self) -> BatchTransform | None:
        """Applied to every training batch on the device (e.g. normalize + augment)."""
        return None

    def eval_transform(self) -> BatchTransform | None:
        """Applied to every evaluation batch on the device (e.g. normalize)."""
        return None

    def check_available(self) -> None:
        """Raise DataMissingError if the data cannot be had (the preflight calls this before any
        job starts). Generated and bundled datasets are always there."""

    # ---- Lightning API
    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        x, y, x_test, y_test = self.load_arrays()
        fit_idx, val_idx = split_indices(len(y), self.val_fraction, self.split_seed)

        def tensors(xs: np.ndarray, ys: np.ndarray, transform: BatchTransform | None) -> TensorDataset:
            dtype = torch.uint8 if xs.dtype == np.uint8 else torch.float32
            xt = torch.as_tensor(np.ascontiguousarray(xs), dtype=dtype)
            return TensorDataset(
                xt.reshape(len(xt), *self.input_shape), torch.as_tensor(ys, dtype=torch.long), transform
            )

        self.train = tensors(x[fit_idx], y[fit_idx], self.train_transform())
        self.val = tensors(x[val_idx], y[val_idx], self.eval_transform())
        self.test = tensors(x_test, y_test, self.eval_transform())

    def _place(self) -> None:
        """Move the splits to the device Lightning trains on (once; a no-op on CPU)."""
        if self.trainer is None or self.train is None:
            return
        device = self.trainer.strategy.root_device
        for ds in (self.train, self.val, self.test):
            if ds is not None and ds.x.device != device:
                ds.to(device)

    def _make_loader(self, ds: TensorDataset, batch_size: int, sampler: Sampler | None) -> DataLoader:
        self._place()
        if sampler is not None and not isinstance(sampler, EpochShuffle):
            raise TypeError(f"TensorDataModule loaders take an EpochShuffle order, not {type(sampler).__name__}")
        # Whole batches of indices, fetched by one index op each; in-memory tensors, so a worker
        # process would only add IPC cost.
        batches = TensorBatches(len(ds), batch_size, sampler)
        return DataLoader(ds, batch_size=None, sampler=batches, collate_fn=_identity, num_workers=0)

    def _scoring_dataset(self) -> TensorDataset:
        self._place()
        return TensorDataset(self.train.x, self.train.y, self.eval_transform())
