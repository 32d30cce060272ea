"""Fully connected network: flatten, then Linear (+BatchNorm) + ReLU blocks, then a classifier."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    """Layers are named fc1, bn1, relu1, drop1, ..., classifier so patterns can address them."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (100, 100),
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = math.prod(input_shape)
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm1d(h)
            layers[f"relu{i}"] = nn.ReLU()
            if dropout:
                layers[f"drop{i}"] = nn.Dropout(dropout)
            width = h
        layers["classifier"] = nn.Linear(width, num_classes)
        super().__init__(layers)
