"""ImageNet-style folders (``<root>/<split>/<class>/<image>``) through torchvision's
ImageFolder: the classic DataLoader path, decoding and augmenting in worker processes.

Training: RandomResizedCrop + horizontal flip; evaluation: resize + center crop; both
normalized with ImageNet's statistics. The validation split is carved from the training
folder (``data.val_fraction``); the folder named by ``data.test_dir`` (ImageNet's
``val``) is the test set. The epoch order is :class:`EpochShuffle`'s, like every dataset.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from prune_exp.config import DataMissingError
from prune_exp.data.base import SplitDataModule, split_indices, subset_indices
from prune_exp.errors import DataError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageFolderDataModule(SplitDataModule):
    def __init__(
        self,
        *,
        batch_size: int,
        eval_batch_size: int,
        val_fraction: float,
        split_seed: int,
        data_dir: str = "data",
        shuffle_seed: int = 0,
        root: str = "imagenet",
        train_dir: str = "train",
        test_dir: str = "val",
        num_classes: int = 1000,
        image_size: int = 224,
        resize: int = 256,
        num_workers: int = 8,
        max_samples: int | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, shuffle_seed=shuffle_seed, max_samples=max_samples
        )
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.root = Path(data_dir) / root
        self.train_dir, self.test_dir = train_dir, test_dir
        self._num_classes, self.image_size, self.resize = num_classes, image_size, resize
        self.num_workers = num_workers
        self._folders: tuple = ()  # (train, test) ImageFolders of every file, once set up

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def _classes(self, split: str) -> list[str]:
        folder = self.root / split
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def check_available(self) -> None:
        for split in (self.train_dir, self.test_dir):
            classes = self._classes(split)
            if not classes:
                raise DataMissingError(
                    f"paths.data_dir: no image folders in {self.root / split} (expected "
                    f"{self.root / split}/<class>/<image>, e.g. ImageNet's train/ and val/ sorted into class "
                    f"folders); allowed: data.root, data.train_dir, data.test_dir pointing at such folders"
                )
            if len(classes) != self.num_classes:
                raise DataMissingError(
                    f"data.num_classes={self.num_classes} but {self.root / split} has {len(classes)} class folders; "
                    f"allowed: data.num_classes={len(classes)}"
                )

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        from torchvision import transforms

        self.check_available()
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(self.image_size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        )
        eval_tf = transforms.Compose(
            [transforms.Resize(self.resize), transforms.CenterCrop(self.image_size), transforms.ToTensor(), normalize]
        )
        train_all, test_all = self._folder(self.train_dir, train_tf), self._folder(self.test_dir, eval_tf)
        val_all = copy.copy(train_all)  # the same files (listed once), the evaluation transform
        val_all.transform = eval_tf
        chosen = subset_indices(len(train_all), self.max_samples, self.split_seed + 2)
        fit_pos, val_pos = split_indices(len(chosen), self.val_fraction, self.split_seed)
        self.train = Subset(train_all, chosen[fit_pos].tolist())
        self.val = Subset(val_all, chosen[val_pos].tolist())
        self.test = Subset(test_all, subset_indices(len(test_all), self.max_samples, self.split_seed + 2).tolist())
        self._folders = (train_all, test_all)

    def _folder(self, split: str, transform):
        """torchvision's ImageFolder of ``<root>/<split>``; DataError naming the class folders with no images."""
        from torchvision.datasets import ImageFolder
        from torchvision.datasets.folder import IMG_EXTENSIONS

        try:
            return ImageFolder(str(self.root / split), transform=transform)
        except FileNotFoundError:
            empty = [c for c in self._classes(split) if not _has_images(self.root / split / c, IMG_EXTENSIONS)]
            names = ", ".join(empty[:3]) + (", ..." if len(empty) > 3 else "")
            raise DataError(
                f"{self.root / split}: no images in {len(empty)} of its class folders ({names}); allowed: at least one "
                f"image ({' '.join(IMG_EXTENSIONS)}) in every class folder"
            ) from None

    def data_digest(self) -> str:
        """sha256 of the file list, without reading a file: each image's path (relative to the
        root), size and mtime_ns and class index, the class-to-index maps, and the settings that
        pick the val and ``max_samples`` subsets. One stat per file keeps it cheap at ImageNet
        scale (1.3M files: seconds, against hours to read the 150 GB). A rewritten file changes
        its size or mtime and so the digest; so does a copy that does not keep the mtimes (it
        trains its own dense run: safe, not wrong)."""
        if not self._folders:
            raise RuntimeError("call setup() first")
        h = hashlib.sha256()
        split = {"val_fraction": self.val_fraction, "split_seed": self.split_seed, "max_samples": self.max_samples}
        h.update(json.dumps(split, sort_keys=True).encode())
        for folder in self._folders:
            h.update(json.dumps(folder.class_to_idx, sort_keys=True).encode())
            for path, target in folder.samples:  # sorted by class, then by file
                st = os.stat(path)
                h.update(f"{os.path.relpath(path, self.root)}\0{target}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    def _make_loader(self, ds, batch_size: int, sampler) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def _scoring_dataset(self) -> Subset:
        return Subset(self.val.dataset, self.train.indices)  # val's dataset: train folder, eval transform


def _has_images(folder: Path, extensions: tuple[str, ...]) -> bool:
    """Whether ``folder`` holds (at any depth) a file ImageFolder would load."""
    return any(f.lower().endswith(extensions) for _, _, files in os.walk(folder, followlinks=True) for f in files)
