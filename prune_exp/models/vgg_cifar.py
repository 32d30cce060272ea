"""VGG for CIFAR with one fully connected layer, as in OpenLTH's ``cifar_vgg`` (Renda et al. 2020)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from prune_exp.config import ConfigError
from prune_exp.models.shapes import image_shape, too_small

# Output channels of the 3x3 convolutions; "M" is a 2x2 max-pool (OpenLTH's plans).
PLANS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class VGGCIFAR(nn.Sequential):
    """3x3 convolutions (padding 1, with bias) + BatchNorm + ReLU and four 2x2 max-pools,
    then a global average pool to 512 features and one linear classifier.

    On 32x32 inputs the last map is 2x2, and the global average pool is OpenLTH's
    ``AvgPool2d(2)``; on larger inputs it still gives 512 features. ``depth`` (11, 13, 16,
    19) names the ImageNet VGG whose convolution stack is used (8, 10, 13, 16 convolutions);
    its three fully connected layers are replaced by the one classifier. VGG-16 on 3x32x32
    with 10 classes: 14,728,266 parameters.

    Layers: conv1, bn1, relu1, conv2, ..., pool1, ..., conv13, bn13, relu13, avgpool,
    flatten, classifier: ``conv{i}`` is the i-th convolution, Li et al.'s (2017) ``Conv_i``.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 16, batch_norm: bool = True) -> None:
        if depth not in PLANS:
            raise ConfigError(f"model.depth={depth} is not allowed; allowed: one of {', '.join(map(str, PLANS))}")
        in_ch, h, w = image_shape(input_shape, f"vgg_cifar (depth {depth})")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        convs = pools = 0
        for spec in PLANS[depth]:
            if spec == "M":
                pools += 1
                layers[f"pool{pools}"] = nn.MaxPool2d(2)
                h, w = h // 2, w // 2
                if min(h, w) < 1:
                    raise too_small(f"vgg{depth}", input_shape, f"pool{pools}", "16x16")
                continue
            convs += 1
            layers[f"conv{convs}"] = nn.Conv2d(in_ch, int(spec), 3, padding=1)
            if batch_norm:
                layers[f"bn{convs}"] = nn.BatchNorm2d(int(spec))
            layers[f"relu{convs}"] = nn.ReLU()
            in_ch = int(spec)
        layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        layers["classifier"] = nn.Linear(in_ch, num_classes)
        super().__init__(layers)
