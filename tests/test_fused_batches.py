"""A fused group's batches (fused/batches.py): every arm gets exactly the batches its own
loader would give it, in its own order and with its own augmentation, whether they come
from one shared copy of the data or from each arm's loader."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from prune_exp.data.augment import CropFlip, Normalize
from prune_exp.data.base import TensorBatches, TensorDataset, _identity
from prune_exp.data.order import EpochShuffle
from prune_exp.fused.batches import FusedBatches, set_epoch

BATCH = 8


def _loader(x: torch.Tensor, y: torch.Tensor, seed: int) -> DataLoader:
    """An arm's training loader as TensorDataModule makes it: its own order and augmentation."""
    augment = CropFlip(Normalize([0.5], [0.25]), padding=2, seed=seed)
    order = EpochShuffle(len(y), seed, on_epoch=lambda epoch: augment.reseed(seed * 1000 + epoch))
    ds = TensorDataset(x, y, augment)
    return DataLoader(ds, batch_size=None, sampler=TensorBatches(len(y), BATCH, order), collate_fn=_identity)


def _data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (29, 1, 6, 6), dtype=torch.uint8, generator=g), torch.randint(0, 3, (29,), generator=g)


def _arms(data: list[tuple[torch.Tensor, torch.Tensor]]) -> list[DataLoader]:
    return [_loader(x.clone(), y.clone(), seed) for seed, (x, y) in enumerate(data)]


def _each_arm_alone(loaders: list[DataLoader], epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    for loader in loaders:
        set_epoch(loader, epoch)
    return [(torch.stack(xs), torch.stack(ys)) for xs, ys in (zip(*b, strict=True) for b in zip(*loaders, strict=True))]


def _assert_fused_batches_are_each_arms_own(data: list[tuple[torch.Tensor, torch.Tensor]]) -> FusedBatches:
    fused, alone = FusedBatches(_arms(data)), _arms(data)
    for epoch in (0, 1, 5):
        fused.set_epoch(epoch)
        got, want = list(fused), _each_arm_alone(alone, epoch)
        assert len(got) == len(want) == len(fused) == 4  # 29 examples: 3 batches of 8 and one of 5
        for (gx, gy), (wx, wy) in zip(got, want, strict=True):
            assert torch.equal(gx, wx) and torch.equal(gy, wy)
    return fused


def test_arms_over_the_same_examples_share_one_copy_and_each_gets_its_own_batches() -> None:
    fused = _assert_fused_batches_are_each_arms_own([_data(0)] * 3)
    datasets = [loader.dataset for loader in fused.loaders]
    assert fused._shared is datasets[0]
    assert all(ds.x is datasets[0].x and ds.y is datasets[0].y for ds in datasets)


def test_arms_over_different_examples_each_read_their_own() -> None:
    fused = _assert_fused_batches_are_each_arms_own([_data(0), _data(0), _data(1)])
    datasets = [loader.dataset for loader in fused.loaders]
    assert fused._shared is None
    assert datasets[1].x is datasets[0].x and datasets[2].x is not datasets[0].x  # equal ones still shared
