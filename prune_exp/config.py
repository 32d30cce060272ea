"""Typed config schemas (registered in Hydra's ConfigStore) and the checks Hydra cannot do.

Every group file under ``conf/`` extends one of these dataclasses through its defaults list
(``- /schema_<group>_<name>@_here_``), so composition already rejects an unknown key or a
value of the wrong type and names the key. What a type cannot express — ranges, choices,
relations between keys — is checked by :func:`check_config`, which the preflight Hydra
callback runs for every job of a run or sweep before Hydra writes anything.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from prune_exp.errors import (  # noqa: F401
    ConfigError,
    CorruptFileError,
    DataError,
    DataMissingError,
    JobDirBusyError,
    PruneExpError,
)  # the errors live in errors.py; importing them from here keeps working
from prune_exp.retrain.positions import SYNTAX, parse_position


def conf_dir() -> str:
    """conf/ at the repository root; a wheel carries a copy inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if candidate.is_dir():
            return str(candidate)
    raise FileNotFoundError(f"no conf/ directory next to {here}")


# --------------------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    """Fields every datamodule takes; each dataset adds its own."""

    _target_: str = MISSING
    batch_size: int = 128
    eval_batch_size: int = 1000
    val_fraction: float = 0.1  # carved from the training set, never from test
    split_seed: int = 0  # fixes the train/val split (and test split where a set has none)
    max_samples: int | None = None  # at most this many train and test examples each (a fixed subset); None: all


@dataclass
class PluginDataConfig(DataConfig):
    """The schema a user's own datamodule config extends (``- /schema_data_plugin@_here_``): the
    keys every datamodule takes, with their defaults, and any keys of the plug-in's own."""

    open_keys: ClassVar[bool] = True  # check_known_keys leaves the plug-in's own keys alone


@dataclass
class MNIST1DConfig(DataConfig):
    _target_: str = "prune_exp.data.mnist1d.MNIST1DDataModule"  # val: 400 of the 4,000 training signals
    num_samples: int = 5000  # the published set: 4,000 train / 1,000 test
    train_split: float = 0.8
    final_seq_length: int = 40
    data_seed: int = 42  # generation seed; 42 reproduces the published MNIST-1D


@dataclass
class DigitsConfig(DataConfig):
    _target_: str = "prune_exp.data.digits.DigitsDataModule"
    batch_size: int = 64
    val_fraction: float = 0.2
    test_fraction: float = 0.2  # sklearn's digits has no official test split


@dataclass
class SyntheticConfig(DataConfig):
    _target_: str = "prune_exp.data.synthetic.SyntheticDataModule"
    batch_size: int = 64
    num_samples: int = 1000
    num_classes: int = 10
    shape: list[int] = field(default_factory=lambda: [1, 40])
    noise: float = 1.0
    test_fraction: float = 0.2
    data_seed: int = 0


@dataclass
class VisionConfig(DataConfig):
    """torchvision datasets: uint8 in memory, normalized and augmented on the device per batch."""

    download: bool = True  # fetch into paths.data_dir when missing (needs the internet once)
    crop_padding: int = 0  # training augmentation: random crop from the image padded by this
    flip: bool = False  # training augmentation: random horizontal flip
    verify: bool = True  # check the files' md5 (CIFAR); false accepts files you made yourself


@dataclass
class MNISTConfig(VisionConfig):
    _target_: str = "prune_exp.data.vision.MNISTDataModule"
    batch_size: int = 60  # the lottery-ticket paper's LeNet-300-100 batch size
    val_fraction: float = 1 / 12  # 5,000 of the 60,000 training images (the LTH paper)


@dataclass
class FashionMNISTConfig(MNISTConfig):
    _target_: str = "prune_exp.data.vision.FashionMNISTDataModule"


@dataclass
class CIFAR10Config(VisionConfig):
    _target_: str = "prune_exp.data.vision.CIFAR10DataModule"
    batch_size: int = 128  # Renda et al.
    val_fraction: float = 0.2  # Renda et al. hold out 20% of the training set
    crop_padding: int = 4
    flip: bool = True


@dataclass
class CIFAR100Config(CIFAR10Config):
    _target_: str = "prune_exp.data.vision.CIFAR100DataModule"


@dataclass
class ImageFolderConfig(DataConfig):
    """ImageNet-style class folders, read by DataLoader workers (the classic path)."""

    _target_: str = "prune_exp.data.imagefolder.ImageFolderDataModule"
    root: str = "imagenet"  # under paths.data_dir
    train_dir: str = "train"
    test_dir: str = "val"  # ImageNet's validation set is the test set; val is carved from train
    num_classes: int = 1000
    image_size: int = 224
    resize: int = 256  # evaluation: resize, then center-crop image_size
    num_workers: int = 8
    batch_size: int = 256
    eval_batch_size: int = 256
    val_fraction: float = 0.02  # ~25,000 training images held out


# -------------------------------------------------------------------------------------- model
@dataclass
class MLPConfig:
    _target_: str = "prune_exp.models.mlp.MLP"
    hidden: list[int] = field(default_factory=lambda: [100, 100])
    batch_norm: bool = False


@dataclass
class CNN1DConfig:
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
class LeNet5Config:
    """Caffe's LeNet-5, as pruned by Han et al. (2015); needs images of at least 16x16."""

    _target_: str = "prune_exp.models.lenet.LeNet5"


@dataclass
class ConvNetConfig:
    """The LTH paper's Conv-2/4/6: 3x3 convs, a max-pool after every ``pool_every``, FC layers."""

    _target_: str = "prune_exp.models.convnet.ConvNet"
    channels: list[int] = field(default_factory=lambda: [64, 64])
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    pool_every: int = 2


@dataclass
class ResNetCIFARConfig:
    """He et al.'s CIFAR ResNet with projection shortcuts (OpenLTH's cifar_resnet)."""

    _target_: str = "prune_exp.models.resnet_cifar.ResNetCIFAR"
    depth: int = 20  # 6n+2: 20, 32, 44, 56, 110


@dataclass
class VGGCIFARConfig:
    """VGG for CIFAR with one linear classifier (OpenLTH's cifar_vgg)."""

    _target_: str = "prune_exp.models.vgg_cifar.VGGCIFAR"
    depth: int = 16  # 11, 13, 16, 19
    batch_norm: bool = True


@dataclass
class TorchvisionResNetConfig:
    """torchvision's ImageNet ResNets, untrained, ``fc`` renamed ``classifier``."""

    _target_: str = "prune_exp.models.torchvision_resnet.TorchvisionResNet"
    arch: str = "resnet18"  # resnet18, resnet34, resnet50, resnet101, resnet152


# ---------------------------------------------------------------------------- optim, schedule
@dataclass
class ScheduleConfig:
    """LR as a pure function of the (fractional) dense epoch; optional linear warmup first."""

    name: str = MISSING
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.0  # warmup starts at this fraction of optim.lr


@dataclass
class MultiStepScheduleConfig(ScheduleConfig):
    name: str = "multistep"
    milestones: list[float] = field(default_factory=lambda: [30.0, 45.0])  # in epochs
    gamma: float = 0.1


@dataclass
class CosineScheduleConfig(ScheduleConfig):
    name: str = "cosine"
    final_lr_factor: float = 0.0  # LR at the end, as a fraction of optim.lr


@dataclass
class ConstantScheduleConfig(ScheduleConfig):
    name: str = "constant"


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = 0.1  # the schedule's peak LR
    weight_decay: float = 0.0
    schedule: Any = MISSING  # one of the *ScheduleConfig, from the group optim/schedule


@dataclass
class SGDConfig(OptimConfig):
    """SGD with momentum (Renda et al.: momentum 0.9, not Nesterov, weight decay 5e-4)."""

    name: str = "sgd"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


# -------------------------------------------------------------------------------------- prune
@dataclass
class MagnitudeConfig:
    _target_: str = "prune_exp.pruning.criteria.Magnitude"


@dataclass
class RandomConfig:
    _target_: str = "prune_exp.pruning.criteria.Random"


@dataclass
class TaylorConfig:
    _target_: str = "prune_exp.pruning.criteria.Taylor"
    batches: int = 16  # training batches the first-order Taylor scores are accumulated over


SCOPES = ("global", "layerwise")
PRUNE_SCHEDULES = ("one_shot", "iterative")


@dataclass
class PruneConfig:
    criterion: Any = MISSING  # from the group prune/criterion
    sparsity: float = 0.9  # target fraction of prunable weights removed at the end
    schedule: str = "iterative"  # one_shot | iterative
    rate: float = 0.2  # iterative: fraction of the *remaining* weights removed per round
    scope: str = "global"  # global (one threshold) | layerwise (same fraction per layer)
    include: list[str] = field(default_factory=list)  # fnmatch on parameter names; [] = all
    exclude: list[str] = field(default_factory=list)
    # pattern -> multiplier of the round's pruning fraction for matching layers
    # (the LTH paper prunes the output layer at half rate: {"classifier.*": 0.5})
    layer_rate_scale: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- structure
@dataclass
class UnstructuredConfig:
    _target_: str = "prune_exp.pruning.structure.Unstructured"


@dataclass
class ChannelConfig:
    _target_: str = "prune_exp.pruning.structure.Channel"


@dataclass
class NMConfig:
    _target_: str = "prune_exp.pruning.structure.NM"
    n: int = 2  # keep n of every m consecutive weights along the input dim (2:4 by default)
    m: int = 4


# ------------------------------------------------------------------------------------ retrain
# A retraining strategy is data (Renda et al. 2020, table in retrain/strategies.py): the weights
# at round start, the LR during the round and how long it lasts. conf/retrain/*.yaml are the
# paper's strategies and controls; a user's own is one YAML file in their config dir.
WEIGHTS = ("current", "rewind", "reinit")  # the pruned weights | the dense run's at rewind_to | a fresh init
LR_MODES = ("constant", "replay")  # retrain.finetune_lr | the dense schedule from lr_from on
DURATIONS = ("budget", "full", "none")  # retrain.budget epochs | dense.epochs | no training


@dataclass
class RetrainConfig:
    strategy: str = MISSING  # its name in the records and the report: any name
    weights: str = "current"  # one of WEIGHTS, times the mask
    rewind_to: str | None = None  # weights=rewind: a position in the dense run (retrain/positions.py)
    lr: str = "constant"  # one of LR_MODES
    lr_from: str | None = None  # lr=replay: the position in the dense schedule at round start
    duration: str = "budget"  # one of DURATIONS
    # the report's names for it: a legend label, a short name for its tables, a matplotlib color
    # (None: the strategy name, and the next color of the palette)
    label: str | None = None
    short: str | None = None
    color: str | None = None
    # t: epochs of retraining after every round, the same for every strategy. 45 of the default
    # dense.epochs=60 spans both LR drops, so LR rewinding replays the large LRs.
    budget: int = 45
    finetune_lr: float | None = None  # lr=constant: the LR; None: the dense schedule's LR at its last step


# The keys of retrain: that every strategy shares; the others say what a strategy is.
SHARED_RETRAIN_KEYS = ("budget", "finetune_lr")
STRATEGY_KEYS = tuple(f.name for f in fields(RetrainConfig) if f.name not in SHARED_RETRAIN_KEYS)


# ------------------------------------------------------------------------- dense, trainer, ...
@dataclass
class DenseConfig:
    epochs: int = 60  # T
    # epochs whose weights are kept for rewinding; None keeps every epoch 0..T
    rewind_epochs: list[int] | None = None


PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "bf16-true", "16-true")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
TRAINER_STRATEGIES = ("auto", "ddp")


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: int = 1  # processes per node with strategy=ddp (CPU: gloo, GPU: nccl)
    num_nodes: int = 1
    strategy: str = "auto"  # auto (one process) | ddp (data.batch_size is split across the processes)
    precision: str = "32-true"
    deterministic: bool = True
    gradient_clip_val: float | None = None
    log_every_n_steps: int = 10
    progress_bar: bool | None = None  # None: on in a terminal, off in multiruns
    num_threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    # resume.ckpt is rewritten at the first epoch end this many seconds of training after the
    # last save (0: every epoch end); a killed run redoes at most that much, to the same result
    checkpoint_every_s: float = 30.0
    compile: bool = False  # torch.compile the net (once per stage; the masks keep working)
    channels_last: bool = False  # NHWC memory format for conv nets (GPU, with bf16/fp16)


@dataclass
class PathsConfig:
    root_dir: str = MISSING
    data_dir: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING


METRICS = ("acc", "acc_top5", "f1_macro")


@dataclass
class EfficiencyConfig:
    """What every round measures besides accuracy (FLOPs and bytes are always counted)."""

    measure_speed: bool = True  # latency (batch 1) and throughput (batch below), on the run's device
    warmup: int = 3  # untimed forward passes before timing
    reps: int = 10  # timed forward passes; the median is recorded
    batch: int = 256  # throughput batch size
    export_csr: bool = True  # unstructured / N:M runs: final_csr.safetensors, the final weights as CSR (csr.py)


@dataclass
class RunConfig:
    data: Any = MISSING
    model: Any = MISSING
    optim: Any = MISSING
    prune: PruneConfig = MISSING
    structure: Any = MISSING
    retrain: RetrainConfig = MISSING
    dense: DenseConfig = field(default_factory=DenseConfig)
    efficiency: EfficiencyConfig = field(default_factory=EfficiencyConfig)
    trainer: TrainerConfig = MISSING
    paths: PathsConfig = MISSING
    name: str = "default"
    seed: int = 0
    select_metric: str = "acc"  # the metric a sweep selects on (val) and the job returns


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


register_configs()  # on import, so the app, the preflight and compose() in tests all see them
register_resolvers()


# ------------------------------------------------------------------------------------ checks
def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}")


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(key, value, "one of " + ", ".join(choices))


def _range(key: str, value: float, lo: float, hi: float, lo_open: bool, hi_open: bool) -> None:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok_lo = numeric and (value > lo if lo_open else value >= lo)
    ok_hi = numeric and (value < hi if hi_open else value <= hi)
    if not (ok_lo and ok_hi):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise _fail(key, value, f"a number in {interval}")


def _positive_int(key: str, value: int) -> None:
    if not (isinstance(value, int) and value >= 1):
        raise _fail(key, value, "an integer >= 1")


def round_fractions_max(prune: PruneConfig) -> float:
    """The largest fraction of the remaining weights that any single round removes."""
    if prune.schedule == "one_shot":
        return prune.sparsity
    return min(prune.rate, prune.sparsity)


def world_size(cfg: TrainerConfig) -> int:
    """Processes that train together: devices x nodes under DDP, else 1."""
    return cfg.devices * cfg.num_nodes if cfg.strategy == "ddp" else 1


def check_known_keys(cfg: Any) -> None:
    """ConfigError for a key no schema has (a ``+prune.sparsty=0.9`` typo: Hydra's ``+`` adds
    keys even to typed configs), naming it and the nearest valid key. Everything under
    ``hydra.`` is Hydra's; nodes without a schema (dicts, a user's own ``_target_``) are free."""
    import difflib
    from dataclasses import fields, is_dataclass

    from omegaconf import DictConfig, OmegaConf

    def walk(node: DictConfig, path: str) -> None:
        schema = OmegaConf.get_type(node)
        typed = schema is not None and is_dataclass(schema) and not getattr(schema, "open_keys", False)
        allowed = [f.name for f in fields(schema)] if typed else None
        for key in node.keys():
            full = f"{path}{key}"
            if full == "hydra":
                continue
            if allowed is not None and key not in allowed:
                near = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {path}{near[0]}?" if near else "one of " + ", ".join(path + a for a in allowed)
                raise ConfigError(f"{full} is not a config key; allowed: {hint}")
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                walk(child, f"{full}.")

    walk(cfg, "")


def check_accelerator(accelerator: str) -> None:
    """ConfigError if ``trainer.accelerator`` asks for a device this machine does not have."""
    import torch

    present = {
        "gpu": torch.cuda.is_available(),
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not present.get(accelerator, True):
        raise _fail(
            "trainer.accelerator",
            accelerator,
            f"cpu or auto: no {accelerator.upper()} device is visible on this machine (trainer=gpu needs one)",
        )


def check_config(cfg: RunConfig) -> None:
    """Raise ConfigError for the first value that types alone cannot rule out."""
    _check_data(cfg.data)
    T = cfg.dense.epochs
    _positive_int("dense.epochs", T)
    if cfg.dense.rewind_epochs is not None:
        for e in cfg.dense.rewind_epochs:
            if not (isinstance(e, int) and 0 <= e <= T):
                raise _fail("dense.rewind_epochs", list(cfg.dense.rewind_epochs), f"integers in [0, {T}]")
    _check_optim(cfg.optim, T)
    _check_prune(cfg.prune, cfg.structure)
    check_retrain(cfg.retrain, T)
    _check_trainer(cfg.trainer, cfg.data.batch_size)
    ef = cfg.efficiency
    for key in ("warmup", "reps", "batch"):
        if key == "warmup" and ef.warmup == 0:
            continue
        _positive_int(f"efficiency.{key}", getattr(ef, key))
    parts = str(cfg.name).replace("\\", "/").split("/")
    if not cfg.name or cfg.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise _fail("name", cfg.name, "a folder name under outputs/ (letters, digits, '-', '_'; '/' for subfolders)")
    _choice("select_metric", cfg.select_metric, METRICS)
    if not (isinstance(cfg.seed, int) and cfg.seed >= 0):
        raise _fail("seed", cfg.seed, "an integer >= 0")


def _check_data(data: DataConfig) -> None:
    if not isinstance(data, DataConfig):  # a user's data YAML without a schema: its keys unchecked
        target = data.get("_target_") if isinstance(data, dict) else None
        raise ConfigError(
            f"data (_target_ {target}) extends no schema; allowed: a data config whose defaults list is "
            "[/schema_data_plugin@_here_, _self_] (the keys every datamodule takes, then its own)"
        )
    _positive_int("data.batch_size", data.batch_size)
    _positive_int("data.eval_batch_size", data.eval_batch_size)
    _range("data.val_fraction", data.val_fraction, 0.0, 1.0, True, True)
    for key in ("test_fraction", "train_split"):
        if hasattr(data, key):
            _range(f"data.{key}", getattr(data, key), 0.0, 1.0, True, True)
    if hasattr(data, "num_samples"):
        _positive_int("data.num_samples", data.num_samples)
    if data.max_samples is not None:
        _positive_int("data.max_samples", data.max_samples)
    if isinstance(data, VisionConfig) and not (isinstance(data.crop_padding, int) and data.crop_padding >= 0):
        raise _fail("data.crop_padding", data.crop_padding, "an integer >= 0")


def _check_optim(opt: OptimConfig, T: int) -> None:
    _range("optim.lr", opt.lr, 0.0, math.inf, True, True)
    _range("optim.weight_decay", opt.weight_decay, 0.0, math.inf, False, True)
    if isinstance(opt, SGDConfig):
        _range("optim.momentum", opt.momentum, 0.0, 1.0, False, True)
        if opt.nesterov and opt.momentum == 0:
            raise _fail("optim.nesterov", True, "false when optim.momentum=0 (Nesterov needs momentum)")
    if isinstance(opt, AdamConfig):
        if len(opt.betas) != 2:
            raise _fail("optim.betas", list(opt.betas), "two numbers in [0, 1)")
        for b in opt.betas:
            _range("optim.betas", b, 0.0, 1.0, False, True)
        _range("optim.eps", opt.eps, 0.0, math.inf, True, True)
    sch = opt.schedule
    _range("optim.schedule.warmup_epochs", sch.warmup_epochs, 0.0, T, False, True)
    _range("optim.schedule.warmup_start_factor", sch.warmup_start_factor, 0.0, 1.0, False, False)
    if isinstance(sch, MultiStepScheduleConfig):
        ms = list(sch.milestones)
        if ms != sorted(ms) or any(not (0 < m < T) for m in ms):
            raise _fail("optim.schedule.milestones", ms, f"increasing epochs in (0, {T}) (dense.epochs={T})")
        _range("optim.schedule.gamma", sch.gamma, 0.0, 1.0, True, False)
    if isinstance(sch, CosineScheduleConfig):
        _range("optim.schedule.final_lr_factor", sch.final_lr_factor, 0.0, 1.0, False, False)


def _check_prune(pr: PruneConfig, st: Any) -> None:
    _range("prune.sparsity", pr.sparsity, 0.0, 1.0, False, True)
    _choice("prune.schedule", pr.schedule, PRUNE_SCHEDULES)
    _range("prune.rate", pr.rate, 0.0, 1.0, True, True)
    _choice("prune.scope", pr.scope, SCOPES)
    biggest = round_fractions_max(pr)
    for pattern, scale in pr.layer_rate_scale.items():
        hi = 1.0 / biggest if biggest > 0 else math.inf
        _range(f"prune.layer_rate_scale[{pattern}]", scale, 0.0, hi, True, True)

    if isinstance(pr.criterion, TaylorConfig):
        _positive_int("prune.criterion.batches", pr.criterion.batches)
    if isinstance(st, NMConfig):
        if not (isinstance(st.m, int) and st.m >= 2):
            raise _fail("structure.m", st.m, "an integer >= 2 (n:m keeps n of every m weights)")
        if not (isinstance(st.n, int) and 1 <= st.n < st.m):
            raise _fail("structure.n", st.n, f"an integer in [1, structure.m={st.m})")
        if pr.schedule != "one_shot":
            raise _fail("prune.schedule", pr.schedule, "one_shot for structure=nm (an n:m mask is reached in one step)")
        implied = 1 - st.n / st.m
        if abs(pr.sparsity - implied) > 1e-9:
            raise _fail(
                "prune.sparsity",
                pr.sparsity,
                f"{implied:g} for structure=nm ({st.n}:{st.m} keeps {st.n} of every {st.m})",
            )


def check_retrain(rt: RetrainConfig, T: int) -> None:
    """A strategy whose parts fit together, with every position inside the dense run (those in
    iterations are checked once the epoch length is known: strategies.plan_round)."""
    if not str(rt.strategy).strip():
        raise _fail("retrain.strategy", rt.strategy, "a name for the strategy")
    _positive_int("retrain.budget", rt.budget)
    _choice("retrain.weights", rt.weights, WEIGHTS)
    _choice("retrain.lr", rt.lr, LR_MODES)
    _choice("retrain.duration", rt.duration, DURATIONS)
    for key, needed_by, needed in (
        ("rewind_to", "weights=rewind", rt.weights == "rewind"),
        ("lr_from", "lr=replay", rt.lr == "replay"),
    ):
        given = getattr(rt, key) is not None
        if needed and not given:
            raise _fail(f"retrain.{key}", None, f"a position ({SYNTAX}): retrain.{needed_by} needs it")
        if given and not needed:
            raise _fail(f"retrain.{key}", getattr(rt, key), f"null unless retrain.{needed_by}")
        if given:
            _check_position(f"retrain.{key}", getattr(rt, key), rt, T)
    if rt.finetune_lr is not None:
        _range("retrain.finetune_lr", rt.finetune_lr, 0.0, math.inf, True, True)


def _check_position(key: str, text: str, rt: RetrainConfig, T: int) -> None:
    try:
        p = parse_position(text)
    except ValueError:
        raise _fail(key, text, SYNTAX) from None
    epoch = p.epoch(T, rt.budget)
    if epoch is None or 0 <= epoch <= T:
        return
    if not p.uses_budget:
        raise _fail(key, text, f"a position in [0, T] (dense.epochs={T})")
    # epoch = a T + b t + c lies in [0, T] for t between these bounds
    a, b, c = p.epochs_T, p.epochs_t, p.epochs
    lo, hi = sorted(((0 - a * T - c) / b, (T - a * T - c) / b))
    budgets = f"{max(1, math.ceil(lo))}..{math.floor(hi)}" if math.floor(hi) >= max(1, math.ceil(lo)) else "none"
    raise _fail(
        "retrain.budget",
        rt.budget,
        f"{budgets} for {rt.strategy}: its {key}={text} must lie in the dense run, and dense.epochs={T}",
    )


def _check_trainer(tr: TrainerConfig, batch_size: int) -> None:
    _choice("trainer.precision", str(tr.precision), PRECISIONS)
    _choice("trainer.accelerator", tr.accelerator, ACCELERATORS)
    _positive_int("trainer.devices", tr.devices)
    _positive_int("trainer.num_nodes", tr.num_nodes)
    _choice("trainer.strategy", tr.strategy, TRAINER_STRATEGIES)
    world = tr.devices * tr.num_nodes
    if world > 1 and tr.strategy != "ddp":
        raise _fail("trainer.strategy", tr.strategy, f"ddp when trainer.devices x trainer.num_nodes = {world} > 1")
    if tr.strategy == "ddp" and batch_size % world:
        raise _fail("data.batch_size", batch_size, f"a multiple of the {world} DDP processes (it is split)")
    _positive_int("trainer.log_every_n_steps", tr.log_every_n_steps)
    if tr.num_threads is not None:
        _positive_int("trainer.num_threads", tr.num_threads)
    _range("trainer.checkpoint_every_s", tr.checkpoint_every_s, 0.0, math.inf, False, True)
    if tr.gradient_clip_val is not None:
        _range("trainer.gradient_clip_val", tr.gradient_clip_val, 0.0, math.inf, True, True)
