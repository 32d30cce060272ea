"""1-D convolutional network; the defaults are MNIST-1D's reference CNN (Greydanus & Kobak)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn


class CNN1D(nn.Sequential):
    """Conv1d (+BatchNorm) + ReLU blocks, flatten, linear classifier.

    Inputs of shape (C, *spatial) are read as C channels over the flattened spatial dims,
    so an 8x8 image becomes a length-64 signal.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (25, 25, 25),
        kernel_sizes: Sequence[int] = (5, 3, 3),
        strides: Sequence[int] = (2, 2, 2),
        padding: int = 1,
        batch_norm: bool = False,
    ) -> None:
        if not len(channels) == len(kernel_sizes) == len(strides):
            raise ValueError(
                f"model.channels, model.kernel_sizes and model.strides need equal lengths, got "
                f"{len(channels)}, {len(kernel_sizes)}, {len(strides)}"
            )
        in_ch, length = input_shape[0], math.prod(input_shape[1:])
        layers: OrderedDict[str, nn.Module] = OrderedDict(to_1d=nn.Flatten(start_dim=2))
        for i, (c, k, s) in enumerate(zip(channels, kernel_sizes, strides, strict=True), start=1):
            layers[f"conv{i}"] = nn.Conv1d(in_ch, c, k, stride=s, padding=padding)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm1d(c)
            layers[f"relu{i}"] = nn.ReLU()
            in_ch = c
            length = (length + 2 * padding - k) // s + 1
            if length < 1:
                raise ValueError(f"model: the signal shrinks to nothing at conv{i} (input {tuple(input_shape)})")
        layers["flatten"] = nn.Flatten()
        layers["classifier"] = nn.Linear(in_ch * length, num_classes)
        super().__init__(layers)
