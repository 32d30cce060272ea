"""torchvision's image datasets, in their own on-disk formats under ``paths.data_dir``.

torchvision downloads the files; they are read here, with every header, size, count and label
checked, so a truncated or garbage file is one error naming it (MNIST's IDX files parsed
directly; CIFAR's pickled batches unpickled with only numpy's array classes allowed).
Downloaded on first use when ``data.download`` is true and the machine is online; with the
files missing and no way to fetch them, the preflight fails with one line naming the
directory and the files expected, before any job starts. The images stay uint8 in memory
(on the training device once training starts); normalization and augmentation run there a
batch at a time (augment.py).
"""

from __future__ import annotations

import math
import pickle
import socket
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from prune_exp.config import DataMissingError
from prune_exp.data.augment import CropFlip, Normalize
from prune_exp.data.base import BatchTransform, TensorDataModule
from prune_exp.errors import DataError
from prune_exp.seeds import derive_seed

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
        """uint8 images N x H x W (x C) and int64 labels, read from the files with every header,
        size and count checked (torchvision only downloads them)."""
        raise NotImplementedError

    def _bad_file(self, path: Path, why: str) -> DataError:
        return DataError(
            f"{path}: {why}; allowed: {self.dataset}'s original files (delete this one and run with "
            f"data.download=true to fetch it again, or put a good copy there)"
        )

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
            self._augment.reseed(derive_seed(self.shuffle_seed, epoch) * 64 + rank)  # up to 64 ranks apart


def _nchw(images: np.ndarray) -> np.ndarray:
    """N x H x W (grey) or N x H x W x C -> N x C x H x W, still uint8."""
    return np.ascontiguousarray(images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2))


class _ArraysOnly(pickle.Unpickler):
    """An unpickler for CIFAR's batches: dicts, lists and numpy arrays, nothing that runs code."""

    # numpy's array reconstructors (numpy 1 and 2 module names; pickle protocols up to 5)
    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        *((f"numpy.{c}.multiarray", n) for c in ("core", "_core") for n in ("_reconstruct", "scalar")),
        *((f"numpy.{c}.numeric", "_frombuffer") for c in ("core", "_core")),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR batch never does")
        return super().find_class(module, name)


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

    def _files(self, train: bool) -> tuple[Path, Path]:
        prefix = "train" if train else "t10k"
        return self.folder / f"{prefix}-images-idx3-ubyte", self.folder / f"{prefix}-labels-idx1-ubyte"

    def source(self, split: str) -> str:
        return str(self._files(split == "train")[1])  # the labels file: the arrays' own checks are about labels

    def _arrays(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        images_file, labels_file = self._files(train)
        images, labels = self._read_idx(images_file, (28, 28)), self._read_idx(labels_file, ())
        if len(images) != len(labels):
            raise self._bad_file(labels_file, f"{len(labels)} labels but {images_file.name} has {len(images)} images")
        return images, labels.astype(np.int64)

    def _read_idx(self, path: Path, item_shape: tuple[int, ...]) -> np.ndarray:
        """The uint8 array of an IDX file (MNIST's format: 0, 0, 0x08, ndim, big-endian sizes,
        the bytes) of items of ``item_shape``, with its header and length checked."""
        data = path.read_bytes()
        ndim = 1 + len(item_shape)
        header = 4 + 4 * ndim
        if len(data) < header:
            raise self._bad_file(path, f"{len(data)} bytes, too short for an IDX header ({header} bytes)")
        if data[:4] != bytes([0, 0, 0x08, ndim]):
            why = f"not an IDX file of {ndim}-D uint8 (it starts with {data[:4].hex()}, not 000008{ndim:02x})"
            raise self._bad_file(path, why)
        dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        if dims[1:] != item_shape:
            raise self._bad_file(path, f"items of {dims[1:]}, expected {item_shape}")
        if len(data) != header + math.prod(dims):
            expected = header + math.prod(dims)
            raise self._bad_file(path, f"{len(data)} bytes, but its header says {expected} (truncated?)")
        return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al.): MNIST's format and sizes, 10 clothing classes."""

    dataset = "FashionMNIST"
    mean, std = (0.2860,), (0.3530,)


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 (Krizhevsky): 50,000 training and 10,000 test 32x32 colour images, read from
    the pickled batches of ``cifar-10-python.tar.gz`` (``<data_dir>/cifar-10-batches-py``)."""

    dataset = "CIFAR10"
    label_key: ClassVar[str] = "labels"
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

    def _batches(self, train: bool) -> list[tuple[str, str]]:
        cls = self._tv_class()
        return cls.train_list if train else cls.test_list

    def source(self, split: str) -> str:
        return f"{self.folder} ({', '.join(name for name, _ in self._batches(split == 'train'))})"

    def _arrays(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        parts = [self._read_batch(self.folder / name, md5) for name, md5 in self._batches(train)]
        images = np.concatenate([x for x, _ in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images, np.concatenate([y for _, y in parts])

    def _read_batch(self, path: Path, md5: str) -> tuple[np.ndarray, np.ndarray]:
        """One pickled batch: N x 3072 uint8 rows and N labels, checked (md5 first when
        ``verify``); unpickled with only numpy's array classes allowed, so no file runs code."""
        from torchvision.datasets.utils import check_integrity

        if self.verify and not check_integrity(str(path), md5):
            raise DataError(
                f"{path}: its md5 is not the official file's (truncated, altered or not CIFAR's); allowed: "
                f"delete it and run with data.download=true to fetch it again, or data.verify=false for files "
                f"you made yourself"
            )
        try:
            with open(path, "rb") as f:
                entry = _ArraysOnly(f, encoding="latin1").load()
            x, y = np.asarray(entry["data"]), np.asarray(entry[self.label_key], dtype=np.int64)
        except Exception as e:  # garbage: any of pickle's errors, or not the dict of a batch
            raise self._bad_file(path, f"not a CIFAR batch ({type(e).__name__}: {str(e)[:120]})") from None
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
            why = f"data of {x.dtype} {x.shape} and {len(y)} labels, expected N x 3072 uint8 and N labels"
            raise self._bad_file(path, why)
        return x, y


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: CIFAR-10's images and format with 100 fine classes (``cifar-100-python``)."""

    dataset = "CIFAR100"
    label_key = "fine_labels"
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

    @property
    def num_classes(self) -> int:
        return 100

    @property
    def folder(self) -> Path:
        from torchvision.datasets import CIFAR100

        return Path(self.data_dir) / CIFAR100.base_folder
