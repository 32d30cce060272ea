"""Experiment: the objects one job is built from (run.experiment_of builds them from its
config), and what the job derives from them once its data is loaded: its plan, its job-cache
key, its training recipe, its pruner, its record's fixed columns. job/spine.py runs it.
"""

from __future__ import annotations

import functools
import logging
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prune_exp.config import RunConfig, world_size
from prune_exp.data.base import TensorDataModule
from prune_exp.job.plan import JobPlan, PrunerSpec
from prune_exp.job.status import JobStatus
from prune_exp.job.tracking import Tracker
from prune_exp.lit.task import Task
from prune_exp.lit.trainer import Job, device_name
from prune_exp.measure.efficiency import RoundMeter
from prune_exp.pruning.criteria import Criterion
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Structure
from prune_exp.store.columns import JobInfo, metric_key
from prune_exp.store.dense_cache import DenseRun, spec_hash
from prune_exp.store.job_cache import JobCache, job_key
from prune_exp.store.records import slurm_job_id

log = logging.getLogger("prune_exp")


@dataclass
class Experiment:
    cfg: RunConfig
    datamodule: TensorDataModule
    build_net: Callable[[], nn.Module]
    criterion: Criterion
    structure: Structure
    # data digest -> what determines the dense run (run.dense_spec_of); its hash addresses the cache
    dense_spec: Callable[[str], dict]
    names: dict[str, str]  # the chosen group options: data, model (for the records)
    job_dir: Path
    overrides: list[str] = field(default_factory=list)
    progress_bar: bool = False
    fingerprint: str = ""  # run.config_fingerprint: what makes two jobs the same job
    tracker: Tracker | None = None  # the logger group's tracker (tracking.py); None: CSV only

    def __post_init__(self) -> None:
        self.status = JobStatus(self.job_dir, self.fingerprint, self.overrides)

    def set_up(self) -> None:
        """The process's threads and log levels; the data loaded (once: Lightning reuses it)."""
        if self.cfg.trainer.num_threads is not None:
            torch.set_num_threads(self.cfg.trainer.num_threads)
        for name in ("lightning.pytorch", "lightning.fabric"):  # keep job logs about the experiment
            logging.getLogger(name).setLevel(logging.WARNING)
        self.datamodule.world_size = world_size(self.cfg.trainer)
        self.datamodule.setup("fit")  # loads (or generates) the data once; Lightning reuses it

    @functools.cached_property
    def plan(self) -> JobPlan:
        """The job's plan, once the data is loaded (set_up): the preflight checked the same."""
        return JobPlan.of(self.cfg, self.datamodule.steps_per_epoch)

    @functools.cached_property
    def data_digest(self) -> str:
        """The loaded data's digest (after set_up), hashed once for the job and dense caches."""
        return self.datamodule.data_digest()

    @functools.cached_property
    def task(self) -> Task:
        return Task.of(self.cfg.task, self.datamodule.num_classes)

    def job_cache(self) -> tuple[JobCache, str] | None:
        """The job cache and this job's key in it; None where a job always trains (job_cache=false,
        or DDP)."""
        if not self.cfg.job_cache or world_size(self.cfg.trainer) > 1:
            return None
        key = job_key(self.fingerprint, self.data_digest, spec_hash(self.dense_spec(self.data_digest)))
        return JobCache(self.cfg.paths.cache_dir), key

    def recipe(self) -> Job:
        """How the job's networks train: the data, the network, the optimizer, the dense schedule."""
        cfg = self.cfg
        return Job(
            datamodule=self.datamodule,
            build_net=self.build_net,
            optim=cfg.optim,
            schedule=self.plan.lr.dense.schedule,  # the dense run's LR, as the strategies' anchors see it
            trainer=cfg.trainer,
            seed=cfg.seed,
            progress_bar=self.progress_bar,
            task=cfg.task,
            dense_weights=Path(cfg.dense.weights) if cfg.dense.weights else None,
            rewind_weights={int(e): Path(f) for e, f in cfg.dense.rewind_weights.items()},
        )

    def dense_epochs_kept(self) -> set[int]:
        """The dense run's epoch files the cache keeps for rewinding: dense.rewind_epochs, all by default."""
        T, rewind = math.ceil(self.plan.dense_epochs), self.cfg.dense.rewind_epochs
        return set(range(T + 1)) if rewind is None else set(rewind)

    def pruner(self, net: nn.Module) -> Pruner:
        """The job's pruner of ``net`` (PrunerSpec, as the preflight checked it), to the plan's targets."""
        spec = PrunerSpec.of(self.cfg, self.criterion, self.structure)
        return spec.build(net, self.plan.pruner_sparsities, self.datamodule.scoring_batches, self.task.loss)

    def meter(self) -> RoundMeter:
        return RoundMeter(
            input_shape=self.datamodule.input_shape,
            examples=len(self.datamodule.train),
            dense_epochs=self.plan.dense_epochs,
            structure=self.structure.name,
            config=self.cfg.efficiency,
        )

    def info(self, dense: DenseRun, dense_cached: bool, fused_group: str | None) -> JobInfo:
        """The record's columns that every row of this job shares."""
        cfg, plan = self.cfg, self.plan
        return JobInfo(
            strategy=plan.round.strategy,
            criterion=self.criterion.name,
            structure=self.structure.name,
            scope=cfg.prune.scope,
            schedule=cfg.prune.schedule,
            rate=cfg.prune.rate,
            target=cfg.prune.sparsity,
            rounds=plan.rounds,
            budget=plan.round.epochs,
            seed=cfg.seed,
            dataset=self.names["data"],
            model=self.names["model"],
            optimizer=cfg.optim.name,
            select_metric=cfg.select_metric,
            metrics=self.task.describe(),
            dense_hash=dense.hash,
            dense_cached=dense_cached,
            dense_epochs=plan.dense_epochs,
            dense_steps=int(dense.meta["steps"]),
            dense_seconds=float(dense.meta["seconds"]),
            job_dir=str(self.job_dir),
            overrides=self.overrides,
            host=socket.gethostname(),
            slurm_job_id=slurm_job_id(),
            device=device_name(cfg.trainer.accelerator),
            torch_version=torch.__version__,
            world_size=world_size(cfg.trainer),
            fused_group=fused_group,
        )


def job_value(row: dict[str, Any], select_metric: str) -> float:
    """What a job returns to Hydra (a sweeper optimizes it): its last round's val score; NaN
    without a val split (data.val_fraction=0), as the test score is never a thing to select on."""
    return float(row.get(metric_key("val", select_metric), math.nan))
