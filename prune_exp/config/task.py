"""The task: what the network is trained for (its loss) and the metrics every evaluation
measures. A metric is any torchmetrics ``Metric``, named by ``_target_``; its direction is the
class's own ``higher_is_better``.

``task.name`` picks a built-in task, which brings its loss and its metrics (:data:`TASKS`);
``task.metrics`` adds to them by name: a new name adds a metric, a built-in's name replaces
it, ``null`` drops it (``task.metrics.acc_top5=null``). Every evaluation also records the loss,
under the name :data:`LOSS`, where lower is better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prune_exp.config.checks import choice, fail

LOSS = "loss"  # the metric name of the task's loss, measured at every evaluation
# An entry's own key for its direction, for a Metric class that does not set higher_is_better;
# taken out of the entry before the metric is built.
DIRECTION_KEY = "higher_is_better"


@dataclass(frozen=True)
class BuiltinTask:
    loss: str  # a key of prune_exp.lit.task.LOSSES
    metrics: dict[str, dict[str, Any]]  # name -> the metric's config (_target_ and its arguments)


TASKS: dict[str, BuiltinTask] = {
    "classification": BuiltinTask(
        loss="cross_entropy",
        metrics={
            "acc": {"_target_": "torchmetrics.classification.MulticlassAccuracy", "average": "micro"},
            "f1_macro": {"_target_": "torchmetrics.classification.MulticlassF1Score", "average": "macro"},
            # left out where the data has at most top_k classes (it would be 1 always)
            "acc_top5": {"_target_": "torchmetrics.classification.MulticlassAccuracy", "top_k": 5, "average": "micro"},
        },
    ),
    "regression": BuiltinTask(
        loss="mse",
        metrics={
            "mse": {"_target_": "torchmetrics.regression.MeanSquaredError"},
            "mae": {"_target_": "torchmetrics.regression.MeanAbsoluteError"},
            "r2": {"_target_": "torchmetrics.regression.R2Score"},
        },
    ),
}


@dataclass
class TaskConfig:
    name: str = "classification"  # a key of TASKS: the loss and the built-in metrics
    # added to the task's metrics by name; a built-in's name replaces it, null drops it
    metrics: dict[str, Any] = field(default_factory=dict)


def task_metrics(cfg: TaskConfig) -> dict[str, dict[str, Any]]:
    """The task's metrics: the built-in task's, then ``cfg.metrics`` over them by name."""
    out = {k: dict(v) for k, v in TASKS[cfg.name].metrics.items()}
    for name, entry in (cfg.metrics or {}).items():
        if entry is None:
            out.pop(name, None)
        else:
            out[name] = dict(entry)
    return out


def check_task(cfg: TaskConfig) -> None:
    """The task is a built-in one and every metric entry names a class (built in the preflight,
    which also checks that it is a torchmetrics Metric with a direction)."""
    choice("task.name", cfg.name, tuple(TASKS))
    for name, entry in (cfg.metrics or {}).items():
        key = f"task.metrics.{name}"
        if name == LOSS or not str(name).isidentifier():
            raise fail(key, entry, f"a metric name other than {LOSS!r} (letters, digits, '_')")
        if entry is not None and not (hasattr(entry, "get") and isinstance(entry.get("_target_"), str)):
            raise fail(key, entry, "null, or a torchmetrics Metric's config: {_target_: <class>, <its arguments>}")
        if entry is not None and entry.get(DIRECTION_KEY) not in (None, True, False):
            raise fail(f"{key}.{DIRECTION_KEY}", entry.get(DIRECTION_KEY), "true or false")


def metric_names(cfg: TaskConfig) -> tuple[str, ...]:
    """Every name evaluation records, the loss included."""
    return (*task_metrics(cfg), LOSS)


def default_select_metric(cfg: TaskConfig) -> str:
    """What a sweep selects on when ``select_metric`` is not given: the task's first metric
    (acc for classification, mse for regression)."""
    return metric_names(cfg)[0]


def higher_is_better(cfg: TaskConfig, name: str) -> bool:
    """Whether a larger ``name`` (one of ``metric_names(cfg)``) is better: the entry's own
    higher_is_better, else its class's (imported, not built); the loss: lower is better."""
    choice("task.name", cfg.name, tuple(TASKS))
    choice("select_metric", name, metric_names(cfg))
    if name == LOSS:
        return False
    entry = task_metrics(cfg)[name]
    if entry.get(DIRECTION_KEY) is not None:
        return bool(entry[DIRECTION_KEY])
    from hydra.utils import get_class

    try:
        return bool(get_class(entry["_target_"]).higher_is_better)
    except Exception:  # not importable, or no direction: said in one line, naming the key
        raise fail(f"task.metrics.{name}._target_", entry["_target_"], "a torchmetrics Metric class") from None


def sweep_direction(cfg: TaskConfig, select_metric: str | None) -> str:
    """What a tuning sweeper must do with a job's value, the final round's val ``select_metric``
    (None: the task's first): ``maximize`` or ``minimize``, as Optuna spells them."""
    return "maximize" if higher_is_better(cfg, select_metric or default_select_metric(cfg)) else "minimize"


DEFAULT_LOSS = TASKS[TaskConfig().name].loss
