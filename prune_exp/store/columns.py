"""Every column of a record row, defined once: what it means, when a row has it, and whether it
differs between two runs of one config.

``VOLATILE``, the table in docs/records.md (``python -m prune_exp.store.columns`` prints it; a test
compares) and the tests' expected keys all come from here; a test checks every column a real
job writes against it. Metric columns are templates over the splits and the task's metric
names (the built-in classification task's unless told others). No torch: the report imports it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from prune_exp.config.task import TaskConfig, metric_names

SPLITS = ("val", "test")
PRUNED = "pruned_"  # a metric measured right after pruning, before the round's retraining


def metric_key(split: str, metric: str, *, pruned: bool = False) -> str:
    """A metric's key in the records: ``val_acc``; measured right after pruning, ``pruned_val_acc``."""
    return f"{PRUNED if pruned else ''}{split}_{metric}"


def log_key(split: str, metric: str = "") -> str:
    """The same metric's name in Lightning's logs and a tracker's: ``val/acc`` (``val/``: the prefix)."""
    return f"{split}/{metric}"


MEASURED = metric_names(TaskConfig())  # what the default task's evaluation measures (acc_top5: > 5 classes)


@dataclass(frozen=True)
class Column:
    name: str  # may hold {split} and {metric}: one column per split and measured metric
    meaning: str
    when: str = "always"  # the rows that have it
    volatile: bool = False  # differs between two runs of one config (wall times, where it ran)

    def names(self, metrics: Iterable[str] = MEASURED) -> list[str]:
        if "{" not in self.name:
            return [self.name]
        return [self.name.format(split=s, metric=m) for s, m in itertools.product(SPLITS, metrics)]


LR_CURVE = "lr_curve"
LR_CURVE_POINTS = 33  # the steps of a round whose LR the records keep (retrain/lr.RoundLR.summary)
_DIAGNOSTICS = [
    Column(
        "prune_fraction",
        "of the prunable weights left before the round, the fraction its pruning removed",
        "round > 0, not gradual",
    ),
    Column(
        "norm_drop",
        "‖W − W_p‖ / ‖W‖ of the round's pruning, over the prunable weights (W: before, W_p: after)",
        "round > 0, not gradual",
    ),
    Column("norm_drop_all", "the same over every parameter", "round > 0, not gradual"),
    Column(
        "pruned_loss_increase",
        "(loss right after pruning - loss before it) / loss before it, on val (else test)",
        "round > 0, not gradual, a loss measured",
    ),
    Column(
        "sign_flips",
        "of the weights kept, the fraction whose sign differs from the dense model's final weights'",
        "round > 0",
    ),
    Column("lr_start", "the LR of the round's first step", "round > 0, the strategy trains"),
    Column(
        "lr_peak", "the round's largest LR (with a retrain.lr_rule: the rule's peak)", "round > 0, the strategy trains"
    ),
    Column("lr_end", "the LR of the round's last step", "round > 0, the strategy trains"),
    Column(
        LR_CURVE,
        f"the LR at {LR_CURVE_POINTS} evenly spaced steps of the round, first to last (the report's figure)",
        "round > 0, the strategy trains",
    ),
    Column("lr_rule", "the LR rule's peak and what else it returned, as JSON", "round > 0, retrain.lr_rule"),
]
DIAGNOSTICS: tuple[str, ...] = tuple(c.name for c in _DIAGNOSTICS)  # what a round's pruning did, its LR


def _col(meaning: str, volatile: bool = False) -> dict[str, Any]:
    """A field's metadata: its column's meaning and whether it differs between reruns."""
    return {"meaning": meaning, "volatile": volatile}


def _columns_of(cls: type) -> list[Column]:
    """A dataclass's fields as columns (each field is one, in every row)."""
    return [Column(f.name, f.metadata["meaning"], volatile=f.metadata["volatile"]) for f in fields(cls)]


@dataclass(frozen=True)
class RoundInfo:
    """The record's round columns that every row has: each field is its column. (A row also has
    the metrics, templates below, and the efficiency columns.)"""

    round: int = field(metadata=_col("0 for the dense model, then 1, 2, ... for each pruning round"))
    target_sparsity: float = field(
        metadata=_col("the round's target: the fraction of prunable weights pruned after it")
    )
    sparsity: float = field(metadata=_col("the fraction of prunable weights that are zero"))
    sparsity_all: float = field(metadata=_col("the fraction of all parameters that are zero"))
    compression: float = field(metadata=_col("all parameters / non-zero parameters"))
    total_params: int = field(metadata=_col("every parameter of the model"))
    nonzero_params: int = field(metadata=_col("parameters not masked to zero"))
    prunable_params: int = field(metadata=_col("the prunable weights"))
    prunable_nonzero: int = field(metadata=_col("prunable weights not masked to zero"))
    mask_sha256: str = field(metadata=_col("a digest of the round's mask: equal digests, equal masks"))
    retrain_epochs: float = field(metadata=_col("epochs of retraining in the round"))
    retrain_steps: int = field(metadata=_col("optimizer steps of retraining in the round"))
    retrain_seconds: float = field(
        metadata=_col("wall seconds of retraining in the round (a fused arm: its group's over its arms)", volatile=True)
    )
    cum_epochs: float = field(
        metadata=_col("epochs so far, the dense stage included (also when it came from the cache)")
    )
    cum_steps: int = field(metadata=_col("optimizer steps so far, the dense stage included"))
    cum_seconds: float = field(metadata=_col("wall seconds so far, the dense stage included", volatile=True))


_ROUND = [
    *_columns_of(RoundInfo),
    Column(
        metric_key("{split}", "{metric}", pruned=True),
        "measured right after pruning, before retraining",
        "round > 0 (val: data.val_fraction > 0)",
    ),
    Column(
        metric_key("{split}", "{metric}"),
        "measured after the round's retraining (round 0: the dense model)",
        "val: data.val_fraction > 0",
    ),
]
_EFFICIENCY = [
    Column("flops_dense", "forward FLOPs of one example (torch.utils.flop_counter, 2 per multiply-add)"),
    Column("flops_effective", "forward FLOPs of the non-zero weights' multiply-adds"),
    Column("theoretical_speedup", "flops_dense / flops_effective"),
    Column("param_bytes_dense", "bytes of all parameters"),
    Column("param_bytes_nonzero", "bytes of the non-zero parameters"),
    Column("train_flops", "training FLOPs of the round: 3 x forward FLOPs x examples seen"),
    Column("dense_train_flops", "training FLOPs of the dense stage"),
    Column("cum_train_flops", "the dense stage's training FLOPs plus every round's so far"),
    Column(
        "latency_ms",
        "ms per example at batch 1 on the run's device (the masked model on dense kernels: timed once a job)",
        "efficiency.measure_speed",
        True,
    ),
    Column(
        "throughput",
        "examples/s at efficiency.batch (timed once a job, as latency_ms)",
        "efficiency.measure_speed",
        True,
    ),
    Column("flops_compacted", "forward FLOPs of the compacted model", "structure=channel"),
    Column("params_compacted", "parameters of the compacted model", "structure=channel"),
    Column("latency_ms_compacted", "latency of the compacted model", "structure=channel, measure_speed", True),
    Column("throughput_compacted", "throughput of the compacted model", "structure=channel, measure_speed", True),
    Column("latency_ms_csr", "latency with CSR linear layers", "unstructured or nm, measure_speed", True),
    Column("throughput_csr", "throughput with CSR linear layers", "unstructured or nm, measure_speed", True),
]


@dataclass(frozen=True)
class JobInfo:
    """The record's job columns, the same in every row of a job: each field is its column."""

    strategy: str = field(metadata=_col("retrain.strategy"))
    criterion: str = field(metadata=_col("the criterion's name"))
    structure: str = field(metadata=_col("the structure's name"))
    scope: str = field(metadata=_col("prune.scope"))
    schedule: str = field(metadata=_col("prune.schedule"))
    rate: float = field(metadata=_col("prune.rate"))
    target: float = field(metadata=_col("prune.sparsity, the final target"))
    rounds: int = field(metadata=_col("rounds the job runs: a job with a row for the last one is complete"))
    budget: int = field(metadata=_col("retraining epochs per round"))
    seed: int = field(metadata=_col("seed"))
    dataset: str = field(metadata=_col("the data option"))
    model: str = field(metadata=_col("the model option"))
    optimizer: str = field(metadata=_col("optim.name"))
    select_metric: str = field(metadata=_col("select_metric"))
    metrics: dict[str, dict[str, bool]] = field(
        metadata=_col("each measured metric's direction and scale: {name: {higher_is_better, percent}}")
    )
    dense_hash: str = field(metadata=_col("the dense run's cache entry"))
    dense_cached: bool = field(metadata=_col("whether the dense run came from the cache when the job first got it"))
    dense_epochs: float = field(metadata=_col("dense.epochs (T)"))
    dense_steps: int = field(metadata=_col("optimizer steps of the dense run"))
    dense_seconds: float = field(metadata=_col("wall seconds of the dense run", volatile=True))
    job_dir: str = field(metadata=_col("the job dir", volatile=True))
    overrides: list[str] = field(default_factory=list, metadata=_col("the job's command-line overrides"))
    host: str = field(default="", metadata=_col("the machine it ran on", volatile=True))
    slurm_job_id: str | None = field(
        default=None, metadata=_col("the SLURM job id (array jobs: job id, _, task id), else null", volatile=True)
    )
    device: str = field(
        default="", metadata=_col("what trained the rounds: cpu, mps, or cuda with the GPU's name", volatile=True)
    )
    torch_version: str = field(default="", metadata=_col("torch.__version__ of the run", volatile=True))
    world_size: int = field(default=1, metadata=_col("processes training together (DDP)"))
    fused_group: str | None = field(
        default=None,
        metadata=_col("the fused group the job trained in, with its other arms (hydra/launcher=fused), else null"),
    )


_JOB = _columns_of(JobInfo)
COLUMNS: tuple[Column, ...] = (*_ROUND, *_DIAGNOSTICS, *_EFFICIENCY, *_JOB)
JOB_COLUMNS: tuple[str, ...] = tuple(c.name for c in _JOB)  # the same in every row of a job
# Columns that differ between two runs of the same config: wall times and where the job ran.
# Everything else is the same, bit for bit, on CPU (tests/test_resume.py), also across a kill.
VOLATILE: tuple[str, ...] = tuple(n for c in COLUMNS if c.volatile for n in c.names())


def all_names(metrics: Iterable[str] = MEASURED) -> set[str]:
    """Every column a row can have, for a task that measures ``metrics`` (the loss included)."""
    return {n for c in COLUMNS for n in c.names(tuple(metrics))}


def markdown_table() -> str:
    """The table of docs/records.md."""
    rows = ["| column | meaning | rows that have it | differs between reruns |", "|---|---|---|---|"]
    rows += [f"| `{c.name}` | {c.meaning} | {c.when} | {'yes' if c.volatile else ''} |" for c in COLUMNS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
