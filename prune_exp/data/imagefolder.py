"""ImageNet-style folders (``<root>/<split>/<class>/<image>``) through torchvision's
ImageFolder: the classic DataLoader path, decoding and augmenting in worker processes.

Training: RandomResizedCrop + horizontal flip; evaluation: resize + center crop; both
normalized with ImageNet's statistics. The validation split is carved from the training
folder (``data.val_fraction``); the folder named by ``data.test_dir`` (ImageNet's
``val``) is the test set. The epoch order is :class:`EpochShuffle`'s, like every dataset.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from prune_exp.config import DataMissingError
from prune_exp.data.base import SplitDataModule, split_indices

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
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, shuffle_seed=shuffle_seed)
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.root = Path(data_dir) / root
        self.train_dir, self.test_dir = train_dir, test_dir
        self._num_classes, self.image_size, self.resize = num_classes, image_size, resize
        self.num_workers = num_workers

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
        from torchvision.datasets import ImageFolder

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
        train_all = ImageFolder(str(self.root / self.train_dir), transform=train_tf)
        fit_idx, val_idx = split_indices(len(train_all), self.val_fraction, self.split_seed)
        self.train = Subset(train_all, fit_idx.tolist())
        self.val = Subset(ImageFolder(str(self.root / self.train_dir), transform=eval_tf), val_idx.tolist())
        self.test = ImageFolder(str(self.root / self.test_dir), transform=eval_tf)

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
