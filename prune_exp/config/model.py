"""The model schemas (``conf/model/``): each names its ``_target_``, the weights' init and its
own keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prune_exp.config.checks import choice, in_range

# model.init: the initialization of every Conv/Linear weight (biases and norm layers keep
# PyTorch's own), as OpenLTH's model_init; models/init.py applies them. "default" is each
# layer's own reset_parameters (PyTorch's: kaiming uniform with a=sqrt(5)).
INITS = ("default", "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform")
DEFAULT_INIT = INITS[0]
# Model keys added after job dirs and dense runs were first written: the hashes see each only
# where it is not this default (app/run.hashed_model), so those keep their hashes.
LATER_MODEL_KEYS: dict[str, Any] = {"init": DEFAULT_INIT, "dropout": 0.0}


@dataclass
class ModelConfig:
    """The key every model takes (a user's own model YAML may set it too, without a schema)."""

    init: str = DEFAULT_INIT


def model_init(model: Any) -> str:
    """``model.init`` of a model config (typed or a user's plain dict), its default if unset."""
    return str(model.get("init", DEFAULT_INIT) if isinstance(model, dict) else getattr(model, "init", DEFAULT_INIT))


def check_model(model: Any) -> None:
    choice("model.init", model_init(model), INITS)
    dropout = model.get("dropout") if isinstance(model, dict) else getattr(model, "dropout", None)
    if dropout is not None:
        in_range("model.dropout", dropout, 0.0, 1.0, lo_open=False, hi_open=True)


@dataclass
class MLPConfig(ModelConfig):
    _target_: str = "prune_exp.models.mlp.MLP"
    hidden: list[int] = field(default_factory=lambda: [100, 100])
    batch_norm: bool = False
    dropout: float = 0.0  # the probability of nn.Dropout after every hidden layer's ReLU; 0: none


@dataclass
class CNN1DConfig(ModelConfig):
    _target_: str = "prune_exp.models.cnn1d.CNN1D"
    channels: list[int] = field(default_factory=lambda: [25, 25, 25])
    kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3])
    strides: list[int] = field(default_factory=lambda: [2, 2, 2])
    padding: int = 1
    batch_norm: bool = False


@dataclass
class LeNet300Config(MLPConfig):
    """LeNet-300-100 (LeCun et al. 1998; Han et al. 2015; the LTH paper's MNIST network)."""

    hidden: list[int] = field(default_factory=lambda: [300, 100])


@dataclass
class LeNet5Config(ModelConfig):
    """Caffe's LeNet-5, as pruned by Han et al. (2015); needs images of at least 16x16."""

    _target_: str = "prune_exp.models.lenet.LeNet5"


@dataclass
class ConvNetConfig(ModelConfig):
    """The LTH paper's Conv-2/4/6: 3x3 convs, a max-pool after every ``pool_every``, FC layers."""

    _target_: str = "prune_exp.models.convnet.ConvNet"
    channels: list[int] = field(default_factory=lambda: [64, 64])
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    pool_every: int = 2


@dataclass
class ResNetCIFARConfig(ModelConfig):
    """He et al.'s CIFAR ResNet with projection shortcuts (OpenLTH's cifar_resnet)."""

    _target_: str = "prune_exp.models.resnet_cifar.ResNetCIFAR"
    depth: int = 20  # 6n+2: 20, 32, 44, 56, 110


@dataclass
class VGGCIFARConfig(ModelConfig):
    """VGG for CIFAR with one linear classifier (OpenLTH's cifar_vgg)."""

    _target_: str = "prune_exp.models.vgg_cifar.VGGCIFAR"
    depth: int = 16  # 11, 13, 16, 19
    batch_norm: bool = True


@dataclass
class TorchvisionResNetConfig(ModelConfig):
    """torchvision's ImageNet ResNets, untrained, ``fc`` renamed ``classifier``."""

    _target_: str = "prune_exp.models.torchvision_resnet.TorchvisionResNet"
    arch: str = "resnet18"  # resnet18, resnet34, resnet50, resnet101, resnet152
