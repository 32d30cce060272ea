"""Batch transforms that run on the training device, a whole batch at a time.

``Normalize`` turns uint8 images into standardized floats; ``CropFlip`` is the CIFAR
augmentation (random crop with zero padding, random horizontal flip) done with tensor
ops on the batch, drawing from a generator seeded per (seed, epoch, rank), so the draws
are the same whether a run was resumed or not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class Normalize:
    """uint8 (0..255) -> float32, then (x / 255 - mean) / std per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean.device != x.device:
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return (x.float() / 255.0 - self.mean) / self.std


class CropFlip:
    """Random crop of the input size from the zero-padded image, random horizontal flip, then
    ``normalize`` — torchvision's RandomCrop(padding) + RandomHorizontalFlip, batched."""

    def __init__(self, normalize: Normalize, padding: int = 4, flip: bool = True, seed: int = 0) -> None:
        self.normalize, self.padding, self.flip = normalize, padding, flip
        self.seed = seed
        self._gen: torch.Generator | None = None

    def reseed(self, seed: int) -> None:
        self.seed, self._gen = seed, None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        g, p = self._generator(x.device), self.padding
        if p:
            padded = F.pad(x, (p, p, p, p))  # zeros, like torchvision's RandomCrop(padding=p)
            oy = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=g, device=x.device)
            ox = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=g, device=x.device)
            rows = oy + torch.arange(h, device=x.device).view(1, h, 1)  # b x h x 1
            cols = ox + torch.arange(w, device=x.device).view(1, 1, w)  # b x 1 x w
            batch = torch.arange(b, device=x.device).view(b, 1, 1)
            x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # b x c x h x w
        if self.flip:
            flip = torch.rand(b, generator=g, device=x.device) < 0.5
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
        return self.normalize(x)
