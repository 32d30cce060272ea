"""LeNet-5 as in Caffe's MNIST example, the network Han et al. (2015) prune.

LeNet-300-100 needs no class of its own: it is ``MLP`` with ``hidden=[300, 100]``
(``model=lenet300``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from prune_exp.models.shapes import image_shape, too_small


class LeNet5(nn.Sequential):
    """Caffe's LeNet: conv 20 5x5, maxpool 2, conv 50 5x5, maxpool 2, fc 500 + ReLU, classifier.

    As in Caffe's ``lenet_train_test.prototxt`` the convolutions have no activation of their
    own (the max-pooling is the nonlinearity) and only fc1 is followed by a ReLU. On 1x28x28
    inputs: 431,080 parameters (Han et al.'s "431K").

    Layers: conv1, pool1, conv2, pool2, flatten, fc1, fc_relu1, classifier.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        c, h, w = image_shape(input_shape, "lenet5")
        for where in ("conv1", "pool1", "conv2", "pool2"):
            h, w = (h - 4, w - 4) if where.startswith("conv") else (h // 2, w // 2)
            if min(h, w) < 1:
                raise too_small("lenet5", input_shape, where, "16x16")
        super().__init__(
            OrderedDict(
                conv1=nn.Conv2d(c, 20, 5),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(20, 50, 5),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(50 * h * w, 500),
                fc_relu1=nn.ReLU(),
                classifier=nn.Linear(500, num_classes),
            )
        )
