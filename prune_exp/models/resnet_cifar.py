"""He et al.'s (2016) ResNet for CIFAR, with projection shortcuts as in OpenLTH's ``cifar_resnet``
(the implementation Renda et al. 2020 used)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from prune_exp.config import ConfigError
from prune_exp.models.shapes import image_shape

WIDTHS = (16, 32, 64)  # channels of the three stages


def blocks_per_stage(depth: int) -> int:
    """n for depth = 6n + 2; ConfigError for any other depth."""
    if not (isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0):
        raise ConfigError(f"model.depth={depth!r} is not allowed; allowed: 6n+2 for n >= 1 (20, 32, 44, 56, 110, ...)")
    return (depth - 2) // 6


def conv_layer_names(depth: int) -> dict[int, str]:
    """Li et al.'s (2017) layer index -> module name, for the ResNet of this depth.

    Index 1 is the stem ``conv1``; then the two 3x3 convolutions of every block in forward
    order. The 1x1 shortcut convolutions are not counted (the classifier would be ``depth``).
    """
    n = blocks_per_stage(depth)
    names = {1: "conv1"}
    for s in range(len(WIDTHS)):
        for b in range(n):
            for k in (1, 2):
                names[2 + 2 * n * s + 2 * b + (k - 1)] = f"stage{s + 1}.block{b}.conv{k}"
    return names


class BasicBlock(nn.Module):
    """conv1 (3x3, stride) + bn1 + relu1, conv2 (3x3) + bn2, add the shortcut, relu2.

    The shortcut is the identity where the shape stays, else ``shortcut.conv`` (1x1, stride)
    + ``shortcut.bn`` (He et al.'s option B, OpenLTH's choice).
    """

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                    bn=nn.BatchNorm2d(channels),
                )
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """ResNet-``depth`` for CIFAR: depth = 6n + 2 (20, 32, 44, 56, 110).

    A 3x3 stem of 16 channels (conv1, bn1, relu), three stages of n BasicBlocks with 16, 32
    and 64 channels (stages 2 and 3 start with stride 2), a global average pool and a linear
    classifier. Convolutions have no bias. With 10 classes: ResNet-20 272,474 parameters,
    ResNet-56 855,770, ResNet-110 1,730,714 (the 1x1 projection shortcuts add a little to the
    published 0.27M / 0.85M / 1.7M of He et al.'s parameter-free shortcuts).

    Module names: ``conv1``, ``bn1``, ``stage{s}.block{b}.conv{k}`` / ``.bn{k}``
    (s = 1..3, b = 0..n-1, k = 1, 2), ``stage{s}.block0.shortcut.conv`` / ``.bn`` for
    s = 2, 3, ``classifier``. So ``stage2.*.conv1.weight`` is every first convolution of
    stage 2, and ``stage*.block*.conv1.weight`` the first convolution of every block (the
    ones Li et al. prune).

    Li et al.'s (2017) layer index counts the convolutions in forward order without the 1x1
    shortcuts: layer 1 is ``conv1`` and layer ``i >= 2`` is ``stage{s}.block{b}.conv{k}`` with
    ``i - 2 = 2n(s - 1) + 2b + (k - 1)``. ``conv_layers`` (and :func:`conv_layer_names`) hold
    that map. Their skipped, sensitive layers:

    - ResNet-56 (n = 9): 16 = ``stage1.block7.conv1``, 20 = ``stage2.block0.conv1``,
      38 = ``stage3.block0.conv1``, 54 = ``stage3.block8.conv1``;
    - ResNet-110 (n = 18): 36 = ``stage1.block17.conv1``, 38 = ``stage2.block0.conv1``,
      74 = ``stage3.block0.conv1``.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 20) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        in_ch = image_shape(input_shape, f"resnet_cifar (depth {depth})")[0]
        self.depth = depth
        self.conv_layers = conv_layer_names(depth)
        self.conv1 = nn.Conv2d(in_ch, WIDTHS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        self.relu = nn.ReLU()
        in_ch = WIDTHS[0]
        for s, width in enumerate(WIDTHS, start=1):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for b in range(n):
                stride = 2 if s > 1 and b == 0 else 1
                blocks[f"block{b}"] = BasicBlock(in_ch, width, stride)
                in_ch = width
            self.add_module(f"stage{s}", nn.Sequential(blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.stage3(self.stage2(self.stage1(out)))
        return self.classifier(self.flatten(self.avgpool(out)))
