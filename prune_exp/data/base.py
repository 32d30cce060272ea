"""In-memory tensor datamodules: the base every dataset that fits in memory builds on.

The whole split lives in one tensor on the training device (uint8 for images); a batch is
one index op on that device, then a batch transform there (normalization, and for
training the augmentation, a whole batch at a time). The DataLoader is only the batching
shell Lightning expects: no worker processes, no per-example Python.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from prune_exp.data.order import EpochShuffle, epoch_steps
from prune_exp.dist import tensors_digest
from prune_exp.errors import ConfigError, DataError
from prune_exp.store.columns import SPLITS

BatchTransform = Callable[[torch.Tensor], torch.Tensor]
SEARCH_LIMIT = 10**6  # the largest value tried when looking for the smallest size that leaves no split empty


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


def split_indices(n: int, fraction: float, seed: int, key: str = "data.val_fraction") -> tuple[np.ndarray, np.ndarray]:
    """Split range(n) into (rest, held_out) with ``round(n * fraction)`` held out; ConfigError
    naming ``key`` (the fraction's config key) if either part would be empty (the held-out one
    may be empty only when ``fraction`` is 0: data.val_fraction=0, no validation split)."""
    k = round(n * fraction)
    if not (0 < k < n or (fraction == 0 and n > 0)):
        raise empty_split_error(key, fraction, n)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def empty_split_error(key: str, fraction: float, n: int) -> ConfigError:
    """The error for a ``fraction`` (config key ``key``) of ``n`` examples that leaves a split empty."""
    k = round(n * fraction)
    allowed = f"{key} between {1 / n:.4g} and {1 - 1 / n:.4g}" if n > 1 else "more examples"
    return ConfigError(f"{key}={fraction} of {n} examples leaves an empty split ({n - k} and {k}); allowed: {allowed}")


def subset_indices(n: int, max_samples: int | None, seed: int) -> np.ndarray:
    """At most ``max_samples`` of range(n), a fixed random choice (sorted); all of them if None."""
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:max_samples])


class SplitDataModule(pl.LightningDataModule):
    """What every datamodule shares: train / val / test splits, the training order
    (:class:`EpochShuffle`, sharded under DDP) and the steps per epoch the LR schedule is laid
    out in. Subclasses say how a split becomes a DataLoader (``_make_loader``)."""

    # The task its targets are for (config.task TASKS): "classification" (integer labels) or
    # "regression" (float targets, num_classes of them per example; one: a vector of N).
    task: ClassVar[str] = "classification"
    val_fraction: float  # of the training set held out for validation (set by each subclass)

    def __init__(
        self, *, batch_size: int, eval_batch_size: int, shuffle_seed: int = 0, max_samples: int | None = None
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.shuffle_seed = shuffle_seed  # the run's seed: the data order differs per seed
        self.max_samples = max_samples  # at most this many train and test examples each (smoke runs)
        self.world_size = 1  # DDP processes; batch_size is split across them (set by the job)
        self.train: Any = None
        self.val: Any = None
        self.test: Any = None

    @abstractmethod
    def data_digest(self) -> str:
        """The identity of the data loaded by ``setup()`` (the dense cache hashes it)."""

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

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits every evaluation measures: val and test, or test alone when nothing is
        held out for validation (data.val_fraction=0: the records have no val columns)."""
        return SPLITS if self.val_fraction > 0 else tuple(s for s in SPLITS if s != "val")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, self.eval_batch_size, shuffle=False)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one training epoch (the last, partial batch included)."""
        if self.train is None:
            raise RuntimeError("call setup() first")
        return epoch_steps(len(self.train), self.batch_size, self.world_size)


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
        max_samples: int | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, shuffle_seed=shuffle_seed, max_samples=max_samples
        )
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.data_dir = data_dir

    # Generated datasets: the key that sets how many examples are made (e.g. "data.num_samples",
    # read from the attribute of that name), so an empty split is blamed on it before generating.
    size_key: ClassVar[str | None] = None

    def planned_sizes(self, n: int) -> tuple[int, int]:
        """(train, test) examples that ``size_key = n`` generates (datasets with a ``size_key``)."""
        raise NotImplementedError

    # ---- what each dataset provides
    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, known from the config alone (no data loaded)."""

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Number of classes (regression: of target values per example, the model's outputs),
        known from the config alone."""

    @abstractmethod
    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return features (float, or uint8 images N x C x H x W) and int labels (regression:
        float targets): x_train, y_train, x_test, y_test."""

    def train_transform(self) -> BatchTransform | None:
        """Applied to every training batch on the device (e.g. normalize + augment)."""
        return None

    def eval_transform(self) -> BatchTransform | None:
        """Applied to every evaluation batch on the device (e.g. normalize)."""
        return None

    def check_available(self) -> None:
        """Raise DataMissingError if the data cannot be had (the preflight calls this before any
        job starts). Generated and bundled datasets are always there."""

    def source(self, split: str) -> str:
        """Where the ``split`` (train or test) arrays come from, for error messages."""
        return f"the {split} set of {type(self).__name__}"

    # ---- checks: one clear error, before any training (the preflight loads the data too)
    def _check_arrays(self, split: str, x: np.ndarray, y: np.ndarray) -> None:
        """DataError naming the source unless there is one label per example, at least one
        example, of ``input_shape``, with integer labels in 0..num_classes-1."""
        where, n = self.source(split), self.num_classes
        if len(x) != len(y):
            raise DataError(f"{where}: {len(x)} examples but {len(y)} labels; allowed: one label per example")
        if len(y) == 0:
            raise DataError(f"{where}: no examples; allowed: at least one")
        if math.prod(x.shape[1:]) != math.prod(self.input_shape):
            raise DataError(f"{where}: examples of shape {tuple(x.shape[1:])}; allowed: {self.input_shape}")
        if self.task == "regression":
            self._check_targets(where, y)
            return
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: labels of type {y.dtype}; allowed: integer class indices")
        bad = np.flatnonzero((y < 0) | (y >= n))
        if len(bad):
            raise DataError(
                f"{where}: label {y[bad[0]]} (example {bad[0]}; {len(bad)} such) is outside the {n} classes; "
                f"allowed: labels 0 to {n - 1}"
            )

    def _check_targets(self, where: str, y: np.ndarray) -> None:
        """Regression: finite float targets, num_classes per example."""
        shape = () if self.num_classes == 1 else (self.num_classes,)
        if not np.issubdtype(y.dtype, np.floating):
            raise DataError(f"{where}: targets of type {y.dtype}; allowed: float targets (regression)")
        if tuple(y.shape[1:]) != shape:
            raise DataError(f"{where}: targets of shape {tuple(y.shape[1:])} per example; allowed: {shape}")
        bad = np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(1))
        if len(bad):
            raise DataError(f"{where}: target of example {bad[0]} is not finite ({len(bad)} such); allowed: finite")

    def _split_sizes(self, n_train: int, n_test: int, max_samples: int | None) -> tuple[int, int, int]:
        """(fit, val, test) examples from ``n_train`` and ``n_test``, after the ``max_samples`` cap."""
        if max_samples is not None:
            n_train, n_test = min(n_train, max_samples), min(n_test, max_samples)
        val = round(n_train * self.val_fraction)
        return n_train - val, val, n_test

    def _check_sizes(self, n_train: int, n_test: int) -> None:
        """ConfigError if a split would be empty, naming the size key to raise (``size_key``, then
        ``data.max_samples``) and its smallest allowed value; else the val fraction's range."""
        sizes = self._split_sizes(n_train, n_test, self.max_samples)
        if min(self._required(sizes)) > 0:
            return
        got = "fit {}, val {}, test {}".format(*sizes)
        cap = self.max_samples
        fixes: list[tuple[str, int, Callable[[int], tuple[int, int, int]]]] = []
        if self.size_key is not None:
            fixes.append((self.size_key, self._size(), lambda v: self._split_sizes(*self.planned_sizes(v), cap)))
        if cap is not None:
            fixes.append(("data.max_samples", cap, lambda v: self._split_sizes(n_train, n_test, v)))
        for key, value, sizes_of in fixes:
            smallest = next((v for v in range(1, SEARCH_LIMIT) if min(self._required(sizes_of(v))) > 0), None)
            if smallest is not None and smallest > value:
                raise ConfigError(f"{key}={value} leaves an empty split ({got}); allowed: {key} >= {smallest}")
        raise empty_split_error("data.val_fraction", self.val_fraction, min(n_train, cap or n_train))

    def _required(self, sizes: tuple[int, int, int]) -> tuple[int, ...]:
        """The (fit, val, test) sizes that must not be 0: val is left out with data.val_fraction=0."""
        fit, val, test = sizes
        return (fit, test) if self.val_fraction == 0 else (fit, val, test)

    def _size(self) -> int:
        assert self.size_key is not None
        return int(getattr(self, self.size_key.removeprefix("data.")))

    def _load_checked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``load_arrays`` with every check above, cut to ``max_samples`` (a fixed random subset)."""
        if self.size_key is not None:  # before generating: a generator may fail on a too small size
            self._check_sizes(*self.planned_sizes(self._size()))
        x, y, x_test, y_test = self.load_arrays()
        self._check_arrays("train", x, y)
        self._check_arrays("test", x_test, y_test)
        keep, keep_test = (subset_indices(len(a), self.max_samples, self.split_seed + 2) for a in (y, y_test))
        self._check_sizes(len(y), len(y_test))
        return x[keep], y[keep], x_test[keep_test], y_test[keep_test]

    def data_digest(self) -> str:
        """sha256 over the train, val and test tensors (bytes, dtypes and shapes) that ``setup()`` loaded."""
        if self.train is None:
            raise RuntimeError("call setup() first")
        splits = {"train": self.train, "val": self.val, "test": self.test}
        return tensors_digest({f"{s}.{k}": getattr(ds, k) for s, ds in splits.items() for k in ("x", "y")})

    # ---- Lightning API
    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        x, y, x_test, y_test = self._load_checked()
        fit_idx, val_idx = split_indices(len(y), self.val_fraction, self.split_seed)
        target_dtype = torch.float32 if self.task == "regression" else torch.long

        def tensors(xs: np.ndarray, ys: np.ndarray, transform: BatchTransform | None) -> TensorDataset:
            dtype = torch.uint8 if xs.dtype == np.uint8 else torch.float32
            xt = torch.as_tensor(np.ascontiguousarray(xs), dtype=dtype)
            return TensorDataset(
                xt.reshape(len(xt), *self.input_shape), torch.as_tensor(ys, dtype=target_dtype), transform
            )

        self.train = tensors(x[fit_idx], y[fit_idx], self.train_transform())
        self.val = tensors(x[val_idx], y[val_idx], self.eval_transform())
        self.test = tensors(x_test, y_test, self.eval_transform())

    def _place(self) -> None:
        """Move the splits to the device Lightning trains on (once; a no-op on CPU)."""
        if self.trainer is not None:
            self.place(self.trainer.strategy.root_device)

    def place(self, device: torch.device) -> None:
        """Move the loaded splits to ``device`` (a fused group's, whose arms' datamodules are
        not attached to its trainer)."""
        if self.train is None:
            return
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
