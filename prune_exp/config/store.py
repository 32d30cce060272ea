"""Where the config lives (``conf/``) and how its schemas reach Hydra (the ConfigStore)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import prune_exp.config.data as data
import prune_exp.config.model as model
import prune_exp.config.optim as optim
import prune_exp.config.prune as prune
import prune_exp.config.retrain as retrain
import prune_exp.config.run_config as run_config
import prune_exp.config.task as task


def conf_dir() -> str:
    """conf/ at the repository root; a wheel carries a copy inside the package."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if candidate.is_dir():
            return str(candidate)
    raise FileNotFoundError(f"no conf/ directory next to {package}")


SCHEMAS: dict[str, dict[str, type]] = {
    "data": {
        "mnist1d": data.MNIST1DConfig,
        "digits": data.DigitsConfig,
        "diabetes": data.DiabetesConfig,
        "synthetic": data.SyntheticConfig,
        "mnist": data.MNISTConfig,
        "fashion_mnist": data.FashionMNISTConfig,
        "cifar10": data.CIFAR10Config,
        "cifar100": data.CIFAR100Config,
        "imagenet": data.ImageFolderConfig,
        "plugin": data.PluginDataConfig,
    },
    "model": {  # presets (resnet56, vgg16, ...) share their family's schema
        "mlp": model.MLPConfig,
        "cnn1d": model.CNN1DConfig,
        "lenet300": model.LeNet300Config,
        "lenet5": model.LeNet5Config,
        "conv2": model.ConvNetConfig,
        "conv4": model.ConvNetConfig,
        "conv6": model.ConvNetConfig,
        "resnet_cifar": model.ResNetCIFARConfig,
        "resnet20": model.ResNetCIFARConfig,
        "resnet56": model.ResNetCIFARConfig,
        "resnet110": model.ResNetCIFARConfig,
        "vgg_cifar": model.VGGCIFARConfig,
        "vgg11": model.VGGCIFARConfig,
        "vgg16": model.VGGCIFARConfig,
        "vgg19": model.VGGCIFARConfig,
        "torchvision_resnet": model.TorchvisionResNetConfig,
        "resnet18": model.TorchvisionResNetConfig,
        "resnet34": model.TorchvisionResNetConfig,
        "resnet50": model.TorchvisionResNetConfig,
    },
    "optim": {"sgd": optim.SGDConfig, "adam": optim.AdamConfig},
    "optim/schedule": {
        "multistep": optim.MultiStepScheduleConfig,
        "cosine": optim.CosineScheduleConfig,
        "constant": optim.ConstantScheduleConfig,
    },
    "prune": {"default": prune.PruneConfig},
    "prune/criterion": {"magnitude": prune.MagnitudeConfig, "random": prune.RandomConfig, "taylor": prune.TaylorConfig},
    "structure": {"unstructured": prune.UnstructuredConfig, "channel": prune.ChannelConfig, "nm": prune.NMConfig},
    "retrain": {"default": retrain.RetrainConfig},
    "task": {"default": task.TaskConfig},
    "trainer": {"default": run_config.TrainerConfig},
    "paths": {"default": run_config.PathsConfig},
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
    cs.store(name="run_schema", node=run_config.RunConfig)
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            node = OmegaConf.structured(schema)
            if getattr(schema, "open_keys", False):
                OmegaConf.set_struct(node, False)  # a plug-in's own keys merge in
            cs.store(name=schema_name(group, name), node=node)


def register_resolvers() -> None:
    """``${pid:}``: this process's id, fixed for the run (cached like Hydra's ``${now:}`` and
    carried with it to a sweep's jobs), so run dirs started in the same second differ.
    ``${direction:}``: ``maximize`` or ``minimize``, what a job's value (its val select_metric)
    asks of a tuning sweeper (conf/hydra/sweeper/tune.yaml)."""
    OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("direction", _direction, replace=True)


def _direction(*, _root_: Any) -> str:
    return task.sweep_direction(_root_.task, _root_.get("select_metric"))
