"""The lottery-ticket paper's Conv-2, Conv-4 and Conv-6 (Frankle & Carbin 2019, Figure 2)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from prune_exp.config import ConfigError
from prune_exp.models.shapes import image_shape, too_small


class ConvNet(nn.Sequential):
    """3x3 convolutions (padding 1) + ReLU, a 2x2 max-pool after every ``pool_every`` of
    them, then fully connected ReLU layers and a linear classifier.

    Conv-2: ``channels=[64, 64]``; Conv-4: ``[64, 64, 128, 128]``; Conv-6:
    ``[64, 64, 128, 128, 256, 256]``; ``hidden=[256, 256]``. On 3x32x32 inputs with 10
    classes they have 4,301,642 / 2,425,930 / 2,262,602 parameters; the paper's Figure 2
    gives 4.3M / 2.4M / 1.7M, and its convolution weights (38K / 260K / 1.1M) match these
    layers exactly, so its Conv-6 total does not add up (its layers give 2.26M).

    Layers: conv1, relu1, conv2, relu2, pool1, conv3, ..., flatten, fc1, fc_relu1, fc2,
    fc_relu2, classifier.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (64, 64),
        hidden: Sequence[int] = (256, 256),
        pool_every: int = 2,
    ) -> None:
        if pool_every < 1:
            raise ConfigError(f"model.pool_every={pool_every} is not allowed; allowed: an integer >= 1")
        name = f"conv{len(channels)}"  # Conv-2/4/6
        in_ch, h, w = image_shape(input_shape, name)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        pools = 0
        for i, c in enumerate(channels, start=1):
            layers[f"conv{i}"] = nn.Conv2d(in_ch, c, 3, padding=1)
            layers[f"relu{i}"] = nn.ReLU()
            in_ch = c
            if i % pool_every == 0:
                pools += 1
                layers[f"pool{pools}"] = nn.MaxPool2d(2)
                h, w = h // 2, w // 2
                if min(h, w) < 1:
                    raise too_small(name, input_shape, f"pool{pools}", f"{2**pools}x{2**pools}")
        layers["flatten"] = nn.Flatten()
        width = in_ch * h * w
        for j, units in enumerate(hidden, start=1):
            layers[f"fc{j}"] = nn.Linear(width, units)
            layers[f"fc_relu{j}"] = nn.ReLU()
            width = units
        layers["classifier"] = nn.Linear(width, num_classes)
        super().__init__(layers)
