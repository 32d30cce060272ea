"""Datamodules: offline data, a validation split carved from train, deterministic order."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fake_cifar, fake_image_folder, fake_mnist

from prune_exp.config import DataMissingError
from prune_exp.data.base import split_indices
from prune_exp.data.digits import DigitsDataModule
from prune_exp.data.imagefolder import ImageFolderDataModule
from prune_exp.data.mnist1d import MNIST1DDataModule
from prune_exp.data.order import EpochShuffle
from prune_exp.data.synthetic import SyntheticDataModule
from prune_exp.data.vision import CIFAR10DataModule, CIFAR100DataModule, FashionMNISTDataModule, MNISTDataModule
from prune_exp.errors import DataError

COMMON = {"batch_size": 100, "eval_batch_size": 500, "split_seed": 0}


def test_mnist1d_is_the_published_set_with_val_carved_from_train(data_dir: Path) -> None:
    dm = MNIST1DDataModule(val_fraction=0.1, data_dir=str(data_dir), **COMMON)
    dm.setup()
    assert (len(dm.train), len(dm.val), len(dm.test)) == (3600, 400, 1000)
    assert dm.train.x.shape[1:] == dm.input_shape == (1, 40) and dm.num_classes == 10
    x, _y, _x_test, y_test = dm.load_arrays()
    fit_idx, val_idx = split_indices(4000, 0.1, 0)
    assert not set(fit_idx) & set(val_idx)
    assert torch.equal(dm.val.x[:, 0], torch.as_tensor(x[val_idx], dtype=torch.float32))
    assert torch.equal(dm.test.y, torch.as_tensor(y_test))
    from mnist1d.data import get_dataset_args, make_dataset  # the package's own generator, seed 42

    ref = make_dataset(get_dataset_args())
    assert np.array_equal(x, ref["x"]) and np.array_equal(y_test, ref["y_test"])
    cached = dm._cache_file()
    mtime = cached.stat().st_mtime_ns
    MNIST1DDataModule(val_fraction=0.1, data_dir=str(data_dir), **COMMON).setup()
    assert cached.stat().st_mtime_ns == mtime  # generated once, then loaded


def test_digits_offline_with_disjoint_splits() -> None:
    dm = DigitsDataModule(val_fraction=0.2, test_fraction=0.2, **COMMON)
    dm.setup()
    sizes = (len(dm.train), len(dm.val), len(dm.test))
    assert sum(sizes) == 1797 and sizes[2] == round(1797 * 0.2) and sizes[1] == round((1797 - sizes[2]) * 0.2)
    assert dm.train.x.shape[1:] == (1, 8, 8)
    assert abs(float(dm.train.x.mean())) < 0.05  # standardized with train statistics


def test_synthetic_shapes_and_classes() -> None:
    dm = SyntheticDataModule(val_fraction=0.25, num_samples=200, num_classes=3, shape=[2, 5], **COMMON)
    dm.setup()
    assert dm.train.x.shape[1:] == (2, 5) and set(dm.train.y.tolist()) <= {0, 1, 2}
    batches = list(dm.train_dataloader())
    assert [len(b[1]) for b in batches] == [100, 20] and dm.steps_per_epoch == 2


def test_epoch_shuffle_is_a_function_of_seed_and_epoch() -> None:
    a, b = EpochShuffle(50, seed=1), EpochShuffle(50, seed=1)
    first = list(a)
    assert first == list(b) and sorted(first) == list(range(50))
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) != first
    assert list(EpochShuffle(50, seed=2)) != first


@pytest.mark.parametrize("world_size", [1, 2])
def test_loaders_yield_the_epoch_order_in_whole_batches(world_size: int) -> None:
    """Training: rank r's batches are its share of EpochShuffle's order for the epoch Lightning
    sets, cut into batch_size / world_size pieces; evaluation: every example in order."""
    dm = SyntheticDataModule(val_fraction=0.25, num_samples=203, num_classes=3, shape=[4], **COMMON)
    dm.setup()
    dm.world_size = world_size
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(5)  # what Lightning does at every epoch start
    batches = list(loader)
    order = EpochShuffle(len(dm.train), dm.shuffle_seed, 0, world_size)
    order.set_epoch(5)
    idx = order.indices()
    per = dm.batch_size // world_size
    assert [len(y) for _, y in batches] == [len(c) for c in idx.split(per)]
    assert len(batches) == len(loader) == dm.steps_per_epoch
    assert torch.equal(torch.cat([x for x, _ in batches]), dm.train.x[idx])
    assert torch.equal(torch.cat([y for _, y in batches]), dm.train.y[idx])
    val = list(dm.val_dataloader())
    assert torch.equal(torch.cat([x for x, _ in val]), dm.val.x)


# ------------------------------------------------------------------ torchvision, offline
@pytest.mark.parametrize(("cls", "folder"), [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")])
def test_mnist_family_reads_idx_files(tmp_path: Path, cls, folder: str) -> None:
    arrays = fake_mnist(tmp_path, folder)
    dm = cls(batch_size=8, eval_batch_size=16, val_fraction=0.25, split_seed=0, data_dir=str(tmp_path), download=False)
    dm.setup()
    assert (len(dm.train), len(dm.val), len(dm.test)) == (36, 12, 16)
    assert dm.test.x.dtype == torch.uint8 and dm.test.x.shape == (16, 1, 28, 28)  # normalized per batch
    (x, y), *_ = list(dm.test_dataloader())
    expected = (arrays["t10k-images-idx3-ubyte"] / 255.0 - cls.mean[0]) / cls.std[0]
    np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    seen = sorted(dm.train.y.tolist() + dm.val.y.tolist())
    assert seen == sorted(arrays["train-labels-idx1-ubyte"].tolist())


def test_a_missing_dataset_offline_names_the_directory_and_the_files(tmp_path: Path) -> None:
    fake_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    dm = MNISTDataModule(batch_size=8, eval_batch_size=16, val_fraction=0.25, split_seed=0, data_dir=str(tmp_path))
    dm.download = False
    with pytest.raises(DataMissingError, match=r"MNIST is not in .*MNIST/raw \(missing: t10k-labels-idx1-ubyte\)"):
        dm.setup()
    dm.download = True  # this machine is offline: the download fails, with the same message and why
    with pytest.raises(DataMissingError, match=r"missing: t10k-labels-idx1-ubyte\) and downloading it failed"):
        dm.check_available()


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_reads_the_pickled_batches(tmp_path: Path, hundred: bool) -> None:
    arrays = fake_cifar(tmp_path, hundred)
    cls = CIFAR100DataModule if hundred else CIFAR10DataModule
    dm = cls(batch_size=10, eval_batch_size=100, val_fraction=0.2, split_seed=0, data_dir=str(tmp_path), verify=False)
    dm.setup()
    assert (len(dm.train), len(dm.val), len(dm.test)) == ((8, 2, 10) if hundred else (40, 10, 10))  # 1 or 5 train files
    assert torch.equal(dm.test.x, torch.from_numpy(arrays["test_x"]))  # uint8, channel-major as stored
    assert dm.test.y.tolist() == arrays["test_y"].tolist() and dm.num_classes == (100 if hundred else 10)
    with pytest.raises(
        DataError, match=r"(data_batch_1|-python/train): its md5 is not the official.*data\.verify=false"
    ):
        cls(batch_size=10, eval_batch_size=100, val_fraction=0.2, split_seed=0, data_dir=str(tmp_path)).setup()


def test_cifar_augmentation_is_a_padded_crop_and_flip_and_is_reseeded_per_epoch(tmp_path: Path) -> None:
    fake_cifar(tmp_path)
    dm = CIFAR10DataModule(
        batch_size=10,
        eval_batch_size=100,
        val_fraction=0.2,
        split_seed=0,
        data_dir=str(tmp_path),
        verify=False,
        crop_padding=4,
        flip=True,
    )
    dm.setup()
    idx = list(range(10))
    mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)

    def batch(epoch: int) -> torch.Tensor:
        dm.reseed(epoch, rank=0)
        return dm.train.__getitems__(idx)[0]

    a, a_again, b = batch(1), batch(1), batch(2)
    assert torch.equal(a, a_again) and not torch.equal(a, b)  # a function of (seed, epoch, rank)
    padded = torch.nn.functional.pad(dm.train.x[:10].float(), (4, 4, 4, 4))
    for i in range(10):  # every augmented image is a 32x32 window of the padded image, maybe mirrored
        img = a[i] * std + mean
        windows = [padded[i, :, r : r + 32, c : c + 32] / 255 for r in range(9) for c in range(9)]
        assert any(torch.allclose(img, w, atol=1e-5) or torch.allclose(img, w.flip(2), atol=1e-5) for w in windows)
    x_eval, _ = dm.val.__getitems__(idx)  # evaluation: normalized only
    assert torch.allclose(x_eval * std + mean, dm.val.x[:10].float() / 255, atol=1e-5)


def test_image_folders_load_through_torchvision_with_val_carved_from_train(tmp_path: Path) -> None:
    fake_image_folder(tmp_path)
    dm = ImageFolderDataModule(
        batch_size=4,
        eval_batch_size=8,
        val_fraction=0.25,
        split_seed=0,
        data_dir=str(tmp_path),
        num_classes=3,
        image_size=32,
        resize=36,
        num_workers=0,
    )
    dm.setup()
    assert (len(dm.train), len(dm.val), len(dm.test)) == (9, 3, 12)
    assert set(dm.train.indices).isdisjoint(dm.val.indices)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and dm.steps_per_epoch == 3
    xt, yt = next(iter(dm.test_dataloader()))
    assert xt.shape == (8, 3, 32, 32) and yt.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    with pytest.raises(DataMissingError, match=r"data\.num_classes=1000 but .* has 3 class folders"):
        ImageFolderDataModule(
            batch_size=4, eval_batch_size=8, val_fraction=0.25, split_seed=0, data_dir=str(tmp_path)
        ).setup()
    with pytest.raises(DataMissingError, match=r"no image folders in .*nowhere/train"):
        ImageFolderDataModule(
            batch_size=4, eval_batch_size=8, val_fraction=0.25, split_seed=0, data_dir=str(tmp_path), root="nowhere"
        ).check_available()


def test_max_samples_is_a_fixed_subset_of_train_and_test_taken_before_the_val_split() -> None:
    def digits(**kwargs) -> DigitsDataModule:
        dm = DigitsDataModule(val_fraction=0.2, test_fraction=0.2, **COMMON, **kwargs)
        dm.setup()
        return dm

    full, a, b = digits(), digits(max_samples=300), digits(max_samples=300)
    assert (len(a.train), len(a.val), len(a.test)) == (240, 60, 300)
    assert a.data_digest() == b.data_digest() != full.data_digest()  # deterministic, and other data
    rows = {tuple(r.tolist()) for r in torch.cat([full.train.x, full.val.x]).flatten(1)}
    assert all(tuple(r.tolist()) in rows for r in torch.cat([a.train.x, a.val.x]).flatten(1))
    assert digits(max_samples=5000).data_digest() == full.data_digest()  # a cap above the size: all of it


def test_the_digest_of_in_memory_data_is_of_its_tensors() -> None:
    dm = SyntheticDataModule(val_fraction=0.25, num_samples=200, **COMMON)
    with pytest.raises(RuntimeError, match="setup"):
        dm.data_digest()
    dm.setup()
    same = SyntheticDataModule(val_fraction=0.25, num_samples=200, **{**COMMON, "eval_batch_size": 7})
    same.setup()
    assert dm.data_digest() == same.data_digest()
    other = SyntheticDataModule(val_fraction=0.25, num_samples=200, data_seed=1, **COMMON)
    other.setup()
    assert other.data_digest() != dm.data_digest()
    changed = other.data_digest()
    other.test.y[0] = (other.test.y[0] + 1) % other.num_classes  # one label
    assert other.data_digest() != changed


def image_folders(data_dir: Path, **kwargs) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(
        batch_size=4, eval_batch_size=8, split_seed=0, data_dir=str(data_dir), num_classes=3, num_workers=0, **kwargs
    )
    dm.setup()
    return dm


def test_the_digest_of_image_folders_is_of_their_files_and_split(tmp_path: Path) -> None:
    """Paths, sizes, mtimes and classes (no file is read): equal for a copy that keeps the
    mtimes, different when a file changes or the split that carves val does."""
    fake_image_folder(tmp_path / "a")
    digest = image_folders(tmp_path / "a", val_fraction=0.25).data_digest()
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # copy2: mtimes kept
    assert image_folders(tmp_path / "b", val_fraction=0.25).data_digest() == digest
    assert image_folders(tmp_path / "b", val_fraction=0.5).data_digest() != digest
    capped = image_folders(tmp_path / "b", val_fraction=0.25, max_samples=8)
    assert (len(capped.train), len(capped.val), len(capped.test)) == (6, 2, 8) and capped.data_digest() != digest
    image = tmp_path / "b/imagenet/val/n00000002/3.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 1))  # rewritten in place
    assert image_folders(tmp_path / "b", val_fraction=0.25).data_digest() != digest
