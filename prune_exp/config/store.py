"""Where the config lives (``conf/``) and how its schemas reach Hydra (the ConfigStore)."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from prune_exp.config.data import (
    CIFAR10Config,
    CIFAR100Config,
    DigitsConfig,
    FashionMNISTConfig,
    ImageFolderConfig,
    MNIST1DConfig,
    MNISTConfig,
    PluginDataConfig,
    SyntheticConfig,
)
from prune_exp.config.model import (
    CNN1DConfig,
    ConvNetConfig,
    LeNet5Config,
    LeNet300Config,
    MLPConfig,
    ResNetCIFARConfig,
    TorchvisionResNetConfig,
    VGGCIFARConfig,
)
from prune_exp.config.optim import (
    AdamConfig,
    ConstantScheduleConfig,
    CosineScheduleConfig,
    MultiStepScheduleConfig,
    SGDConfig,
)
from prune_exp.config.prune import (
    ChannelConfig,
    MagnitudeConfig,
    NMConfig,
    PruneConfig,
    RandomConfig,
    TaylorConfig,
    UnstructuredConfig,
)
from prune_exp.config.retrain import RetrainConfig
from prune_exp.config.run_config import PathsConfig, RunConfig, TrainerConfig


def conf_dir() -> str:
    """conf/ at the repository root; a wheel carries a copy inside the package."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if candidate.is_dir():
            return str(candidate)
    raise FileNotFoundError(f"no conf/ directory next to {package}")


SCHEMAS: dict[str, dict[str, type]] = {
    "data": {
        "mnist1d": MNIST1DConfig,
        "digits": DigitsConfig,
        "synthetic": SyntheticConfig,
        "mnist": MNISTConfig,
        "fashion_mnist": FashionMNISTConfig,
        "cifar10": CIFAR10Config,
        "cifar100": CIFAR100Config,
        "imagenet": ImageFolderConfig,
        "plugin": PluginDataConfig,
    },
    "model": {  # presets (resnet56, vgg16, ...) share their family's schema
        "mlp": MLPConfig,
        "cnn1d": CNN1DConfig,
        "lenet300": LeNet300Config,
        "lenet5": LeNet5Config,
        "conv2": ConvNetConfig,
        "conv4": ConvNetConfig,
        "conv6": ConvNetConfig,
        "resnet_cifar": ResNetCIFARConfig,
        "resnet20": ResNetCIFARConfig,
        "resnet56": ResNetCIFARConfig,
        "resnet110": ResNetCIFARConfig,
        "vgg_cifar": VGGCIFARConfig,
        "vgg11": VGGCIFARConfig,
        "vgg16": VGGCIFARConfig,
        "vgg19": VGGCIFARConfig,
        "torchvision_resnet": TorchvisionResNetConfig,
        "resnet18": TorchvisionResNetConfig,
        "resnet34": TorchvisionResNetConfig,
        "resnet50": TorchvisionResNetConfig,
    },
    "optim": {"sgd": SGDConfig, "adam": AdamConfig},
    "optim/schedule": {
        "multistep": MultiStepScheduleConfig,
        "cosine": CosineScheduleConfig,
        "constant": ConstantScheduleConfig,
    },
    "prune": {"default": PruneConfig},
    "prune/criterion": {"magnitude": MagnitudeConfig, "random": RandomConfig, "taylor": TaylorConfig},
    "structure": {"unstructured": UnstructuredConfig, "channel": ChannelConfig, "nm": NMConfig},
    "retrain": {"default": RetrainConfig},
    "trainer": {"default": TrainerConfig},
    "paths": {"default": PathsConfig},
}


def schema_name(group: str, name: str) -> str:
    """``optim/schedule``, ``cosine`` -> ``schema_optim_schedule_cosine``."""
    return f"schema_{group.replace('/', '_')}_{name}"


def register_configs() -> None:
    """Store every schema at the root as ``schema_<group>_<name>``; the yaml files extend them.

    Root-level names, not a ``schema/`` group: Hydra would list such a group in ``--help`` as
    if its entries were options to pick.
    """
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            node = OmegaConf.structured(schema)
            if getattr(schema, "open_keys", False):
                OmegaConf.set_struct(node, False)  # a plug-in's own keys merge in
            cs.store(name=schema_name(group, name), node=node)


def register_resolvers() -> None:
    """``${pid:}``: this process's id, fixed for the run (cached like Hydra's ``${now:}`` and
    carried with it to a sweep's jobs), so run dirs started in the same second differ."""
    OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True, replace=True)
