"""Epoch time of prune_exp's in-memory data path vs a DataLoader + torchvision transforms.

Same data (CIFAR-shaped uint8 images), same batch size, same augmentation (pad-4 random
crop, horizontal flip, normalization), same device at the end. prune_exp's path keeps the
uint8 images on the device and augments a whole batch there; the classic path decodes one
PIL image at a time in DataLoader workers and copies each batch to the device. Each path
iterates whole epochs; the two are timed alternately, and the script prints the median of
the repetitions and the ratio.

    uv run python scripts/bench_data_path.py                 # CPU, 10,000 images
    uv run python scripts/bench_data_path.py --n 50000 --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from prune_exp.data.augment import CropFlip, Normalize
from prune_exp.data.base import TensorDataset
from prune_exp.data.order import EpochShuffle

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PILDataset(Dataset):
    """What torchvision's CIFAR10 does per item: a PIL image from the HWC uint8 array, transformed."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def epoch(loader, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    total = torch.zeros((), device=device)
    for x, _y in loader:
        x = x.to(device, non_blocking=True)
        total += x[:, 0, 0, 0].sum()  # touch the batch on the device
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="images per epoch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="classic path's workers")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.n)

    # prune_exp: uint8 N x C x H x W on the device, one index op + CropFlip per batch.
    augment = CropFlip(Normalize(MEAN, STD), padding=4, flip=True)
    ds = TensorDataset(
        torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device), torch.from_numpy(labels).to(device), augment
    )
    sampler = EpochShuffle(len(ds), seed=0, on_epoch=lambda e: augment.reseed(e))
    ours = DataLoader(ds, batch_size=args.batch, sampler=sampler, collate_fn=lambda b: b, num_workers=0)

    # classic: PIL + torchvision transforms in DataLoader workers, pinned, copied per batch.
    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    classic = DataLoader(
        PILDataset(images, labels, tf),
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
    )

    epoch(ours, device), epoch(classic, device)  # warm-up (workers start, caches, kernels)
    t_ours, t_classic = [], []
    for rep in range(args.reps):
        sampler.set_epoch(rep + 1)
        t_ours.append(epoch(ours, device))
        t_classic.append(epoch(classic, device))
    mo, mc = statistics.median(t_ours), statistics.median(t_classic)
    print(f"device {device}, {args.n} images, batch {args.batch}, {args.reps} reps, classic workers {args.workers}")
    print("| path | epoch time (median) | images/s |")
    print("|---|---|---|")
    print(f"| prune_exp (uint8 on device, batch augment) | {mo * 1e3:.1f} ms | {args.n / mo:,.0f} |")
    print(f"| DataLoader + torchvision transforms | {mc * 1e3:.1f} ms | {args.n / mc:,.0f} |")
    print(f"classic / prune_exp = {mc / mo:.1f}x")


if __name__ == "__main__":
    main()
