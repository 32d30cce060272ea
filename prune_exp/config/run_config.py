"""The whole job's schema (``RunConfig``: every section plus dense, trainer, paths, efficiency)
and the checks across sections."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING

from prune_exp.config.checks import choice, fail, in_range, positive_int
from prune_exp.config.data import check_data
from prune_exp.config.model import check_model
from prune_exp.config.optim import check_optim
from prune_exp.config.positions import parse_position
from prune_exp.config.prune import PruneConfig, check_prune
from prune_exp.config.retrain import RetrainConfig, check_retrain
from prune_exp.config.task import TaskConfig, check_task, metric_names
from prune_exp.errors import ConfigError


@dataclass
class DenseConfig:
    epochs: int = 60  # T
    # the dense run's length in optimizer steps in place of dense.epochs (OpenLTH's "30000it"):
    # T = iterations / steps per epoch, its last epoch partial when they do not divide
    iterations: int | None = None
    # epochs whose weights are kept for rewinding; None keeps every epoch 0..T
    rewind_epochs: list[int] | None = None
    # a trained model's weights (safetensors, or a state dict read with weights_only=True): the
    # dense stage is read from it, not trained; epochs and optim say how it was trained (LRR
    # replays that schedule). The cache keys it by the file's sha256.
    weights: str | None = None
    # with dense.weights: the weights at earlier epochs of that run, {epoch: file}, for the
    # strategies that rewind to one (WR's T-t, lottery's 0); keyed by their sha256 too
    rewind_weights: dict[int, str] = field(default_factory=dict)


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


@dataclass
class EfficiencyConfig:
    """What every round measures besides accuracy (FLOPs and bytes are always counted)."""

    measure_speed: bool = True  # latency (batch 1) and throughput (batch below), on the run's device
    warmup: int = 3  # untimed forward passes before timing
    reps: int = 10  # timed forward passes; the median is recorded
    batch: int = 256  # throughput batch size
    export_csr: bool = True  # unstructured / N:M runs: final_csr.safetensors, the final weights as CSR (csr.py)


@dataclass
class ArtifactsConfig:
    """What a job keeps besides its records, final mask and weights: every round's mask (1 bit
    per weight, always) and, with ``every_round``, every round's weights."""

    every_round: bool = False  # rounds/weights_<round>.safetensors after every round's retraining


@dataclass
class RunConfig:
    data: Any = MISSING
    model: Any = MISSING
    optim: Any = MISSING
    prune: PruneConfig = MISSING
    structure: Any = MISSING
    retrain: RetrainConfig = MISSING
    task: TaskConfig = MISSING
    dense: DenseConfig = field(default_factory=DenseConfig)
    efficiency: EfficiencyConfig = field(default_factory=EfficiencyConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    trainer: TrainerConfig = MISSING
    paths: PathsConfig = MISSING
    name: str = "default"
    seed: int = 0
    # the metric of the task a sweep selects on (val) and the job returns; None: the task's first
    # (config.task.default_select_metric), which to_run_config puts in its place
    select_metric: str | None = None
    # the tracker: a Lightning logger's config (_target_), or none (logger=csv); run.run builds
    # it from the composed config, so a typed config has None here
    logger: Any = None
    # a job that has finished before (same config, data and dense run) returns its records and
    # files from the cache without training (job_cache.py); false: train it again
    job_cache: bool = True


# The top-level keys of a job's config that never change its results: where it writes, Hydra's
# settings, the experiment tracker, whether the job cache is used (run.config_fingerprint).
OUTSIDE_IDENTITY = ("hydra", "paths", "logger", "job_cache")


def world_size(cfg: TrainerConfig) -> int:
    """Processes that train together: devices x nodes under DDP, else 1."""
    return cfg.devices * cfg.num_nodes if cfg.strategy == "ddp" else 1


def dense_length(dense: DenseConfig, steps_per_epoch: int) -> float:
    """T in epochs: dense.epochs, or dense.iterations / steps per epoch (then maybe fractional)."""
    if dense.iterations is None:
        return dense.epochs
    T = dense.iterations / steps_per_epoch
    return int(T) if T.is_integer() else T


def check_config(cfg: RunConfig) -> None:
    """Raise ConfigError for the first value that types alone cannot rule out. With
    dense.iterations, what depends on T waits for the epoch length: :func:`check_dense_length`."""
    check_data(cfg.data)
    check_model(cfg.model)
    positive_int("dense.epochs", cfg.dense.epochs)
    if cfg.dense.iterations is None:
        check_dense_length(cfg, cfg.dense.epochs)
    else:
        positive_int("dense.iterations", cfg.dense.iterations)
        check_optim(cfg.optim, None)
    check_prune(cfg.prune, cfg.structure)
    if cfg.prune.schedule == "gradual" and (cfg.retrain.weights != "current" or cfg.retrain.duration == "none"):
        raise fail(
            "retrain",
            cfg.retrain.strategy,
            "a strategy that trains the current weights with prune.schedule=gradual (finetune, lr_rewind: the "
            "mask changes every prune.every steps of one run, so no round starts from rewound or fresh weights)",
        )
    check_trainer(cfg.trainer, cfg.data.batch_size)
    ef = cfg.efficiency
    for key in ("warmup", "reps", "batch"):
        if key == "warmup" and ef.warmup == 0:
            continue
        positive_int(f"efficiency.{key}", getattr(ef, key))
    parts = str(cfg.name).replace("\\", "/").split("/")
    if not cfg.name or cfg.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise fail("name", cfg.name, "a folder name under outputs/ (letters, digits, '-', '_'; '/' for subfolders)")
    check_task(cfg.task)
    if cfg.select_metric is not None:
        choice("select_metric", cfg.select_metric, metric_names(cfg.task))
    if not (isinstance(cfg.seed, int) and cfg.seed >= 0):
        raise fail("seed", cfg.seed, "an integer >= 0")


def check_dense_length(cfg: RunConfig, T: float) -> None:
    """The checks that need T, the dense run's length in epochs (a fraction with dense.iterations):
    the kept epochs, the schedule's epochs, the strategy's positions, the given weights' epochs."""
    last = math.ceil(T)  # the epoch whose file holds the final weights
    if cfg.dense.rewind_epochs is not None:
        for e in cfg.dense.rewind_epochs:
            if not (isinstance(e, int) and 0 <= e <= last):
                raise fail("dense.rewind_epochs", list(cfg.dense.rewind_epochs), f"integers in [0, {last}]")
    check_optim(cfg.optim, T)
    check_retrain(cfg.retrain, T)
    check_given_weights(cfg.dense, cfg.retrain, T)


def check_given_weights(dense: DenseConfig, rt: RetrainConfig, T: float) -> None:
    """dense.rewind_weights only with dense.weights, at epochs of the dense run; a strategy that
    rewinds to a whole epoch that one of the two files holds (the final one is dense.weights)."""
    given = dict(dense.rewind_weights)
    if given and dense.weights is None:
        raise fail("dense.rewind_weights", given, "{} without dense.weights (the files are epochs of that run)")
    for epoch in given:
        if not (isinstance(epoch, int) and 0 <= epoch < T):
            raise fail("dense.rewind_weights", given, f"files keyed by epochs in [0, {T}) (T: dense.weights)")
    if dense.weights is None or rt.weights != "rewind":
        return
    epoch = parse_position(rt.rewind_to).epoch(T, rt.budget)
    if epoch is None or not float(epoch).is_integer():
        raise fail(
            "retrain.rewind_to",
            rt.rewind_to,
            f"a whole epoch with dense.weights (the given files are epochs; {rt.strategy} rewinds inside one)",
        )
    if epoch != T and int(epoch) not in given:
        raise fail(
            "dense.rewind_weights",
            given,
            f"a file for epoch {int(epoch)}, where {rt.strategy} rewinds to (retrain.rewind_to={rt.rewind_to}, "
            f"T={T}, t={rt.budget}): dense.weights={dense.weights!r} holds epoch {T} only. Add "
            f"+dense.rewind_weights={{{int(epoch)}:PATH}}, or use finetune, lr_rewind, reinit, none",
        )


def check_trainer(tr: TrainerConfig, batch_size: int) -> None:
    choice("trainer.precision", str(tr.precision), PRECISIONS)
    choice("trainer.accelerator", tr.accelerator, ACCELERATORS)
    positive_int("trainer.devices", tr.devices)
    positive_int("trainer.num_nodes", tr.num_nodes)
    choice("trainer.strategy", tr.strategy, TRAINER_STRATEGIES)
    world = tr.devices * tr.num_nodes
    if world > 1 and tr.strategy != "ddp":
        raise fail("trainer.strategy", tr.strategy, f"ddp when trainer.devices x trainer.num_nodes = {world} > 1")
    if tr.strategy == "ddp" and batch_size % world:
        raise fail("data.batch_size", batch_size, f"a multiple of the {world} DDP processes (it is split)")
    positive_int("trainer.log_every_n_steps", tr.log_every_n_steps)
    if tr.num_threads is not None:
        positive_int("trainer.num_threads", tr.num_threads)
    in_range("trainer.checkpoint_every_s", tr.checkpoint_every_s, 0.0, math.inf, False, True)
    if tr.gradient_clip_val is not None:
        in_range("trainer.gradient_clip_val", tr.gradient_clip_val, 0.0, math.inf, True, True)


def check_known_keys(cfg: Any) -> None:
    """ConfigError for a key no schema has (a ``+prune.sparsty=0.9`` typo: Hydra's ``+`` adds
    keys even to typed configs), naming it and the nearest valid key. Everything under
    ``hydra.`` is Hydra's; nodes without a schema (dicts, a user's own ``_target_``) are free."""
    import difflib
    from dataclasses import is_dataclass

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
        raise fail(
            "trainer.accelerator",
            accelerator,
            f"cpu or auto: no {accelerator.upper()} device is visible on this machine (trainer=gpu needs one)",
        )
