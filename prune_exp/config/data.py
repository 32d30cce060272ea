"""The data schemas (``conf/data/``) and their checks; a user's own datamodule extends
``PluginDataConfig``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from omegaconf import MISSING

from prune_exp.config.checks import fail, in_range, positive_int
from prune_exp.errors import ConfigError


@dataclass
class DataConfig:
    """Fields every datamodule takes; each dataset adds its own."""

    _target_: str = MISSING
    batch_size: int = 128
    eval_batch_size: int = 1000
    val_fraction: float = 0.1  # carved from the training set, never from test
    split_seed: int = 0  # fixes the train/val split (and test split where a set has none)
    max_samples: int | None = None  # at most this many train and test examples each (a fixed subset); None: all


@dataclass
class PluginDataConfig(DataConfig):
    """The schema a user's own datamodule config extends (``- /schema_data_plugin@_here_``): the
    keys every datamodule takes, with their defaults, and any keys of the plug-in's own."""

    open_keys: ClassVar[bool] = True  # check_known_keys leaves the plug-in's own keys alone


@dataclass
class MNIST1DConfig(DataConfig):
    _target_: str = "prune_exp.data.mnist1d.MNIST1DDataModule"  # val: 400 of the 4,000 training signals
    num_samples: int = 5000  # the published set: 4,000 train / 1,000 test
    train_split: float = 0.8
    final_seq_length: int = 40
    data_seed: int = 42  # generation seed; 42 reproduces the published MNIST-1D


@dataclass
class DigitsConfig(DataConfig):
    _target_: str = "prune_exp.data.digits.DigitsDataModule"
    batch_size: int = 64
    val_fraction: float = 0.2
    test_fraction: float = 0.2  # sklearn's digits has no official test split


@dataclass
class DiabetesConfig(DataConfig):
    _target_: str = "prune_exp.data.diabetes.DiabetesDataModule"  # regression: use with task=regression
    batch_size: int = 32
    val_fraction: float = 0.2
    test_fraction: float = 0.2  # sklearn's diabetes has no official test split


@dataclass
class SyntheticConfig(DataConfig):
    _target_: str = "prune_exp.data.synthetic.SyntheticDataModule"
    batch_size: int = 64
    num_samples: int = 1000
    num_classes: int = 10
    shape: list[int] = field(default_factory=lambda: [1, 40])
    noise: float = 1.0
    test_fraction: float = 0.2
    data_seed: int = 0


@dataclass
class VisionConfig(DataConfig):
    """torchvision datasets: uint8 in memory, normalized and augmented on the device per batch."""

    download: bool = True  # fetch into paths.data_dir when missing (needs the internet once)
    crop_padding: int = 0  # training augmentation: random crop from the image padded by this
    flip: bool = False  # training augmentation: random horizontal flip
    verify: bool = True  # check the files' md5 (CIFAR); false accepts files you made yourself


@dataclass
class MNISTConfig(VisionConfig):
    _target_: str = "prune_exp.data.vision.MNISTDataModule"
    batch_size: int = 60  # the lottery-ticket paper's LeNet-300-100 batch size
    val_fraction: float = 1 / 12  # 5,000 of the 60,000 training images (the LTH paper)


@dataclass
class FashionMNISTConfig(MNISTConfig):
    _target_: str = "prune_exp.data.vision.FashionMNISTDataModule"


@dataclass
class CIFAR10Config(VisionConfig):
    _target_: str = "prune_exp.data.vision.CIFAR10DataModule"
    batch_size: int = 128  # Renda et al.
    val_fraction: float = 0.2  # Renda et al. hold out 20% of the training set
    crop_padding: int = 4
    flip: bool = True


@dataclass
class CIFAR100Config(CIFAR10Config):
    _target_: str = "prune_exp.data.vision.CIFAR100DataModule"


@dataclass
class ImageFolderConfig(DataConfig):
    """ImageNet-style class folders, read by DataLoader workers (the classic path)."""

    _target_: str = "prune_exp.data.imagefolder.ImageFolderDataModule"
    root: str = "imagenet"  # under paths.data_dir
    train_dir: str = "train"
    test_dir: str = "val"  # ImageNet's validation set is the test set; val is carved from train
    num_classes: int = 1000
    image_size: int = 224
    resize: int = 256  # evaluation: resize, then center-crop image_size
    num_workers: int = 8
    batch_size: int = 256
    eval_batch_size: int = 256
    val_fraction: float = 0.02  # ~25,000 training images held out


def check_data(data: DataConfig) -> None:
    if not isinstance(data, DataConfig):  # a user's data YAML without a schema: its keys unchecked
        target = data.get("_target_") if isinstance(data, dict) else None
        raise ConfigError(
            f"data (_target_ {target}) extends no schema; allowed: a data config whose defaults list is "
            "[/schema_data_plugin@_here_, _self_] (the keys every datamodule takes, then its own)"
        )
    positive_int("data.batch_size", data.batch_size)
    positive_int("data.eval_batch_size", data.eval_batch_size)
    in_range("data.val_fraction", data.val_fraction, 0.0, 1.0, False, True)  # 0: no val split
    for key in ("test_fraction", "train_split"):
        if hasattr(data, key):
            in_range(f"data.{key}", getattr(data, key), 0.0, 1.0, True, True)
    if hasattr(data, "num_samples"):
        positive_int("data.num_samples", data.num_samples)
    if data.max_samples is not None:
        positive_int("data.max_samples", data.max_samples)
    if isinstance(data, VisionConfig) and not (isinstance(data.crop_padding, int) and data.crop_padding >= 0):
        raise fail("data.crop_padding", data.crop_padding, "an integer >= 0")
