"""torchvision's image datasets, read from their own on-disk formats under ``paths.data_dir``.

Downloaded on first use when ``data.download`` is true and the machine is online; with the
files missing and no way to fetch them, the preflight fails with one line naming the
directory and the files expected, before any job starts.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import ClassVar

import numpy as np

from prune_exp.config import DataMissingError
from prune_exp.data.base import TensorDataModule

DOWNLOAD_TIMEOUT_S = 60  # per connection: an unreachable mirror fails instead of hanging


class TorchvisionDataModule(TensorDataModule):
    """A torchvision dataset with an official train/test split, normalized per channel."""

    dataset: ClassVar[str]  # the class name in torchvision.datasets
    mean: ClassVar[tuple[float, ...]]
    std: ClassVar[tuple[float, ...]]

    def __init__(self, *, download: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.download = download

    @property
    def num_classes(self) -> int:
        return 10

    # ---- where the files are
    @property
    def folder(self) -> Path:
        """The directory torchvision reads (e.g. ``<data_dir>/MNIST/raw``)."""
        raise NotImplementedError

    def expected_files(self) -> list[str]:
        raise NotImplementedError

    def missing_files(self) -> list[str]:
        return [f for f in self.expected_files() if not (self.folder / f).exists()]

    def _make(self, train: bool, download: bool):
        import torchvision.datasets as tvd

        return getattr(tvd, self.dataset)(root=self.data_dir, train=train, download=download)

    def check_available(self) -> None:
        """Download what is missing (if allowed); DataMissingError if the files cannot be had."""
        missing = self.missing_files()
        if not missing:
            return
        expected = f"{self.dataset} is not in {self.folder} (missing: {', '.join(missing)})"
        if not self.download:
            raise DataMissingError(
                f"paths.data_dir: {expected}; allowed: a data dir with these files, or data.download=true online"
            )
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        new_dirs = [d for d in (self.folder, *self.folder.parents) if not d.exists()]
        try:
            for train in (True, False):
                self._make(train, download=True)
        except Exception as e:
            for d in new_dirs:  # leave no empty directories behind (deepest first)
                if d.exists() and not any(d.iterdir()):
                    d.rmdir()
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise DataMissingError(
                f"paths.data_dir: {expected} and downloading it failed ({reason}); allowed: put the files "
                f"there (or set paths.data_dir to where they are), or run once on a machine that is online"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
        if self.missing_files():
            raise DataMissingError(f"paths.data_dir: {expected} after downloading it")

    def prepare_data(self) -> None:
        self.check_available()

    def _arrays(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images N x H x W (x C) and int64 labels."""
        ds = self._make(train, download=False)
        data = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
        targets = ds.targets.numpy() if hasattr(ds.targets, "numpy") else np.asarray(ds.targets)
        return data, targets.astype(np.int64)

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self.check_available()
        (x, y), (x_test, y_test) = self._arrays(True), self._arrays(False)
        return self._normalize(x), y, self._normalize(x_test), y_test

    def _normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W (x C) -> float32 N x C x H x W, (x / 255 - mean) / std per channel."""
        x = images.astype(np.float32) / 255.0
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return (x - mean) / std


class MNISTDataModule(TorchvisionDataModule):
    """MNIST (LeCun et al.): 60,000 training and 10,000 test 28x28 digits, IDX files."""

    dataset = "MNIST"
    mean, std = (0.1307,), (0.3081,)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 28, 28)

    @property
    def folder(self) -> Path:
        return Path(self.data_dir) / self.dataset / "raw"

    def expected_files(self) -> list[str]:
        return [f"{s}-{k}-idx{d}-ubyte" for s in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))]


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al.): MNIST's format and sizes, 10 clothing classes."""

    dataset = "FashionMNIST"
    mean, std = (0.2860,), (0.3530,)
