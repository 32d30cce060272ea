"""torchvision's ImageNet ResNets (untrained), with the final ``fc`` renamed ``classifier``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn
from torchvision import models

from prune_exp.config import ConfigError
from prune_exp.models.shapes import image_shape

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


class TorchvisionResNet(nn.Sequential):
    """``torchvision.models.<arch>(weights=None, num_classes=...)``, as a Sequential of its
    children with a Flatten before the last layer and ``fc`` renamed ``classifier``.

    The names are torchvision's otherwise: conv1, bn1, relu, maxpool, ``layer{1..4}.{b}.conv{k}``
    / ``.bn{k}``, ``layer{s}.0.downsample.0`` (the 1x1 projection) / ``.1`` (its BatchNorm),
    avgpool, flatten, classifier. With 1000 classes: ResNet-18 11,689,512 parameters,
    ResNet-34 21,797,672, ResNet-50 25,557,032. Inputs with other than 3 channels get a
    fresh conv1 of that many input channels (initialized as torchvision initializes it).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, arch: str = "resnet18") -> None:
        if arch not in ARCHS:
            raise ConfigError(f"model.arch={arch!r} is not allowed; allowed: one of {', '.join(ARCHS)}")
        in_ch = image_shape(input_shape, arch)[0]
        net = getattr(models, arch)(weights=None, num_classes=num_classes)
        if in_ch != net.conv1.in_channels:
            old = net.conv1
            net.conv1 = nn.Conv2d(in_ch, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        layers: OrderedDict[str, nn.Module] = OrderedDict(net.named_children())
        fc = layers.pop("fc")
        layers["flatten"] = nn.Flatten()
        layers["classifier"] = fc
        super().__init__(layers)
