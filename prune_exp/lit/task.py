"""A task, built: its loss function and its metrics as torchmetrics objects, each with the
direction and scale the records carry to the report (``metrics`` column).

The config side (names, built-in tasks, checks that need no torch) is config/task.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate
from torchmetrics import Metric, MetricCollection

from prune_exp.config.task import DIRECTION_KEY, LOSS, TASKS, TaskConfig, task_metrics
from prune_exp.errors import ConfigError


@dataclass(frozen=True)
class Loss:
    fn: Callable[..., torch.Tensor]  # (preds, target, reduction=...) -> loss
    # the model's output as the loss and the metrics take it, given the targets
    preds: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _as_targets(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return output.reshape(target.shape)  # (N, 1) outputs for (N,) targets


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss(F.cross_entropy, lambda output, target: output),  # logits; class indices
    "mse": Loss(F.mse_loss, _as_targets),  # float targets
}


@dataclass(frozen=True)
class MetricSpec:
    name: str
    config: dict[str, Any]  # _target_ and its arguments, num_classes included where it takes one
    higher_is_better: bool
    percent: bool  # bounded by [0, 1]: the report shows it in percent

    def build(self) -> Metric:
        return instantiate(self.config)


@dataclass(frozen=True)
class Task:
    name: str
    loss_name: str
    metrics: tuple[MetricSpec, ...]
    left_out: tuple[str, ...] = ()  # metrics the data cannot have (top_k not below the class count)

    @classmethod
    def of(cls, cfg: TaskConfig | None, num_classes: int) -> Task:
        """The task ``cfg`` describes (None: the defaults) for data with ``num_classes`` outputs;
        ConfigError naming ``task.metrics.<name>`` for a metric that cannot be built."""
        cfg = cfg if cfg is not None else TaskConfig()
        specs, left_out = [], []
        for name, entry in task_metrics(cfg).items():
            top_k = entry.get("top_k")
            if isinstance(top_k, int) and top_k >= num_classes:
                left_out.append(name)
                continue
            specs.append(_spec(name, entry, num_classes))
        return cls(cfg.name, TASKS[cfg.name].loss, tuple(specs), tuple(left_out))

    @property
    def names(self) -> tuple[str, ...]:
        """Every name evaluation records, the loss last."""
        return (*(m.name for m in self.metrics), LOSS)

    def collection(self) -> MetricCollection:
        # No compute groups: torchmetrics merges metrics whose states are equal after the first
        # update, and after a first batch predicted without error acc_top5's and f1_macro's
        # are; f1_macro then reported acc_top5's value.
        return MetricCollection({m.name: m.build() for m in self.metrics}, compute_groups=False)

    def preds(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The model's output as the loss and the metrics take it."""
        return LOSSES[self.loss_name].preds(output, target)

    def loss(self, output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return LOSSES[self.loss_name].fn(self.preds(output, target), target, reduction=reduction)

    def describe(self) -> dict[str, dict[str, bool]]:
        """The records' ``metrics`` column: each name's direction and scale, the loss included."""
        out = {m.name: {"higher_is_better": m.higher_is_better, "percent": m.percent} for m in self.metrics}
        out[LOSS] = {"higher_is_better": False, "percent": False}
        return out


def _spec(name: str, entry: dict[str, Any], num_classes: int) -> MetricSpec:
    key = f"task.metrics.{name}"
    config = {k: v for k, v in entry.items() if k != DIRECTION_KEY}
    target = f"{key}._target_={config['_target_']!r}"
    try:
        cls = get_class(config["_target_"])
    except Exception as e:
        raise ConfigError(f"{target} cannot be imported ({_one_line(e)}); allowed: a class path") from None
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise ConfigError(f"{target} is not a torchmetrics Metric; allowed: a Metric class")
    if "num_classes" in inspect.signature(cls).parameters and "num_classes" not in config:
        config["num_classes"] = num_classes
    try:
        metric = instantiate(config)
    except Exception as e:
        why = _one_line(e)
        raise ConfigError(f"{key}={entry!r} cannot be built ({why}); allowed: {cls.__name__}'s arguments") from None
    higher = entry.get(DIRECTION_KEY, metric.higher_is_better)
    if higher is None:
        raise ConfigError(
            f"{key}: {cls.__name__} does not say whether higher is better; "
            f"allowed: set {DIRECTION_KEY}: true or false in its entry, or on the class"
        )
    percent = metric.plot_lower_bound == 0.0 and metric.plot_upper_bound == 1.0
    return MetricSpec(name, config, bool(higher), percent)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
