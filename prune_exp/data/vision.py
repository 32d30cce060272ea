"""torchvision's image datasets, read from their own on-disk formats under ``paths.data_dir``.

Downloaded on first use when ``data.download`` is true and the machine is online; with the
files missing and no way to fetch them, the preflight fails with one line naming the
directory and the files expected, before any job starts. The images stay uint8 in memory
(on the training device once training starts); normalization and augmentation run there a
batch at a time (augment.py).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import ClassVar

import numpy as np

from prune_exp.config import DataMissingError
from prune_exp.data.augment import CropFlip, Normalize
from prune_exp.data.base import BatchTransform, TensorDataModule

DOWNLOAD_TIMEOUT_S = 60  # per connection: an unreachable mirror fails instead of hanging


class TorchvisionDataModule(TensorDataModule):
    """A torchvision dataset with an official train/test split, normalized per channel."""

    dataset: ClassVar[str]  # the class name in torchvision.datasets
    mean: ClassVar[tuple[float, ...]]
    std: ClassVar[tuple[float, ...]]

    def __init__(
        self, *, download: bool = True, crop_padding: int = 0, flip: bool = False, verify: bool = True, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.download = download
        self.crop_padding, self.flip = crop_padding, flip  # training augmentation (0, False: none)
        self.verify = verify  # check the files' md5 where torchvision knows it (CIFAR)
        self._augment: CropFlip | None = None

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
        """uint8 N x C x H x W images and int64 labels, train then test."""
        self.check_available()
        (x, y), (x_test, y_test) = self._arrays(True), self._arrays(False)
        return _nchw(x), y, _nchw(x_test), y_test

    # ---- on-device batch transforms
    def eval_transform(self) -> BatchTransform:
        return Normalize(self.mean, self.std)

    def train_transform(self) -> BatchTransform:
        if not (self.crop_padding or self.flip):
            return Normalize(self.mean, self.std)
        self._augment = CropFlip(Normalize(self.mean, self.std), self.crop_padding, self.flip)
        return self._augment

    def reseed(self, epoch: int, rank: int) -> None:
        if self._augment is not None:
            self._augment.reseed((self.shuffle_seed * 1_000_003 + epoch) * 64 + rank)


def _nchw(images: np.ndarray) -> np.ndarray:
    """N x H x W (grey) or N x H x W x C -> N x C x H x W, still uint8."""
    return np.ascontiguousarray(images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2))


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


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 (Krizhevsky): 50,000 training and 10,000 test 32x32 colour images, read from
    the pickled batches of ``cifar-10-python.tar.gz`` (``<data_dir>/cifar-10-batches-py``)."""

    dataset = "CIFAR10"
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, 32, 32)

    @property
    def folder(self) -> Path:
        from torchvision.datasets import CIFAR10

        return Path(self.data_dir) / CIFAR10.base_folder

    def _tv_class(self):
        import torchvision.datasets as tvd

        return getattr(tvd, self.dataset)

    def expected_files(self) -> list[str]:
        cls = self._tv_class()
        return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]

    def _make(self, train: bool, download: bool):
        cls = self._tv_class()
        if self.verify or download:
            return cls(root=self.data_dir, train=train, download=download)

        class Unverified(cls):  # same reader, file presence instead of md5 (for files you made)
            meta: ClassVar[dict] = {**cls.meta, "md5": None}

            def _check_integrity(self) -> bool:
                files = self.train_list + self.test_list
                return all((Path(self.root) / self.base_folder / n).exists() for n, _ in files)

        return Unverified(root=self.data_dir, train=train, download=False)


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: CIFAR-10's images and format with 100 fine classes (``cifar-100-python``)."""

    dataset = "CIFAR100"
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

    @property
    def num_classes(self) -> int:
        return 100

    @property
    def folder(self) -> Path:
        from torchvision.datasets import CIFAR100

        return Path(self.data_dir) / CIFAR100.base_folder
