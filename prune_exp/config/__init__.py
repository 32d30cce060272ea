"""Typed config schemas (registered in Hydra's ConfigStore) and the checks Hydra cannot do.

Every group file under ``conf/`` extends one of these dataclasses through its defaults list
(``- /schema_<group>_<name>@_here_``), so composition already rejects an unknown key or a
value of the wrong type and names the key. What a type cannot express (ranges, choices,
relations between keys) is checked by :func:`check_config`, which the preflight Hydra
callback runs for every job of a run or sweep before Hydra writes anything.

Each section's schemas and checks live together: ``data.py``, ``model.py``, ``optim.py``,
``prune.py`` (criterion, scope, schedule, structure), ``retrain.py`` (the strategy), ``task.py``
(the loss and the metrics) and ``run_config.py`` (the whole job, and the checks across
sections); ``checks.py`` has what they share and ``store.py`` registers them with Hydra.
Everything is importable from here.
"""

from __future__ import annotations

from prune_exp.config.checks import (
    choice,
    fail,
    in_range,
    positive_int,
)
from prune_exp.config.data import (
    CIFAR10Config,
    CIFAR100Config,
    DataConfig,
    DigitsConfig,
    FashionMNISTConfig,
    ImageFolderConfig,
    MNIST1DConfig,
    MNISTConfig,
    PluginDataConfig,
    SyntheticConfig,
    VisionConfig,
    check_data,
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
    OptimConfig,
    ScheduleConfig,
    SGDConfig,
    check_optim,
)
from prune_exp.config.prune import (
    PRUNE_SCHEDULES,
    SCOPES,
    ChannelConfig,
    MagnitudeConfig,
    NMConfig,
    PruneConfig,
    RandomConfig,
    TaylorConfig,
    UnstructuredConfig,
    check_patterns,
    check_prune,
    round_fractions_max,
)
from prune_exp.config.retrain import (
    DURATIONS,
    LR_MODES,
    SHARED_RETRAIN_KEYS,
    STRATEGY_KEYS,
    STYLE_KEYS,
    WEIGHTS,
    RetrainConfig,
    check_retrain,
)
from prune_exp.config.run_config import (
    ACCELERATORS,
    PRECISIONS,
    TRAINER_STRATEGIES,
    DenseConfig,
    EfficiencyConfig,
    PathsConfig,
    RunConfig,
    TrainerConfig,
    check_accelerator,
    check_config,
    check_known_keys,
    check_trainer,
    world_size,
)
from prune_exp.config.store import (
    SCHEMAS,
    conf_dir,
    register_configs,
    register_resolvers,
    schema_name,
)
from prune_exp.config.task import LOSS, TASKS, TaskConfig, check_task, metric_names, task_metrics
from prune_exp.errors import (  # the errors live in errors.py; importing them from here works too
    ConfigError,
    CorruptFileError,
    DataError,
    DataMissingError,
    JobDirBusyError,
    PruneExpError,
)

__all__ = [
    "ACCELERATORS",
    "DURATIONS",
    "LOSS",
    "LR_MODES",
    "PRECISIONS",
    "PRUNE_SCHEDULES",
    "SCHEMAS",
    "SCOPES",
    "SHARED_RETRAIN_KEYS",
    "STRATEGY_KEYS",
    "STYLE_KEYS",
    "TASKS",
    "TRAINER_STRATEGIES",
    "WEIGHTS",
    "AdamConfig",
    "CIFAR10Config",
    "CIFAR100Config",
    "CNN1DConfig",
    "ChannelConfig",
    "ConfigError",
    "ConstantScheduleConfig",
    "ConvNetConfig",
    "CorruptFileError",
    "CosineScheduleConfig",
    "DataConfig",
    "DataError",
    "DataMissingError",
    "DenseConfig",
    "DigitsConfig",
    "EfficiencyConfig",
    "FashionMNISTConfig",
    "ImageFolderConfig",
    "JobDirBusyError",
    "LeNet5Config",
    "LeNet300Config",
    "MLPConfig",
    "MNIST1DConfig",
    "MNISTConfig",
    "MagnitudeConfig",
    "MultiStepScheduleConfig",
    "NMConfig",
    "OptimConfig",
    "PathsConfig",
    "PluginDataConfig",
    "PruneConfig",
    "PruneExpError",
    "RandomConfig",
    "ResNetCIFARConfig",
    "RetrainConfig",
    "RunConfig",
    "SGDConfig",
    "ScheduleConfig",
    "SyntheticConfig",
    "TaskConfig",
    "TaylorConfig",
    "TorchvisionResNetConfig",
    "TrainerConfig",
    "UnstructuredConfig",
    "VGGCIFARConfig",
    "VisionConfig",
    "check_accelerator",
    "check_config",
    "check_data",
    "check_known_keys",
    "check_optim",
    "check_patterns",
    "check_prune",
    "check_retrain",
    "check_task",
    "check_trainer",
    "choice",
    "conf_dir",
    "fail",
    "in_range",
    "metric_names",
    "positive_int",
    "register_configs",
    "register_resolvers",
    "round_fractions_max",
    "schema_name",
    "task_metrics",
    "world_size",
]

register_configs()  # on import, so the app, the preflight and compose() in tests all see them
register_resolvers()
