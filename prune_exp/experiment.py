"""One job: the dense stage, the prune-retrain stage, records and final artifacts.

A job is resumable: started again in the same job dir with the same config (a SLURM
requeue, or a rerun with ``hydra.run.dir`` / ``hydra.sweep.dir`` of the killed run), it
continues from its last epoch; a job that finished does no training and returns its
result. A job dir that holds a job of a different config is refused.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prune_exp.artifacts import save_artifacts, save_round
from prune_exp.atomic import write_json
from prune_exp.cache import DenseCache, DenseRun, spec_hash
from prune_exp.checkpoint import RESUME_FILE, Persist, ResumeCheckpoint, load_checkpoint
from prune_exp.config import ConfigError, RunConfig, check_accelerator, dense_length, world_size
from prune_exp.data.base import TensorDataModule
from prune_exp.dist import is_main
from prune_exp.efficiency import RoundMeter
from prune_exp.interrupt import Interrupted
from prune_exp.job_cache import JobCache, job_key
from prune_exp.jobdir import JobLock
from prune_exp.jobfiles import RECORDS_FILE, RETRAIN_LOG_DIR, STATUS_FILE, finished
from prune_exp.lit.callbacks import RoundResult
from prune_exp.lit.module import PruneModule
from prune_exp.pruning.criteria import Criterion
from prune_exp.pruning.gradual import GradualPlan
from prune_exp.pruning.pruner import Pruner, sparsity_schedule
from prune_exp.pruning.structure import Structure
from prune_exp.recorder import RoundRecorder
from prune_exp.records import JobInfo, RecordWriter, read_records, slurm_job_id
from prune_exp.retrain.schedules import LRSchedule
from prune_exp.retrain.strategies import RoundPlan, plan_round
from prune_exp.stages import Job, Rounds, build_rounds, dense_metrics, dense_stage, fit_rounds
from prune_exp.task import Task
from prune_exp.tracking import Tracker

log = logging.getLogger("prune_exp")


@dataclass
class JobSession:
    """What :meth:`Experiment.session` hands to the code that trains the job: the status's
    fixed fields, its path, and the job's value (set by that code; set already for a job done
    before)."""

    base: dict
    status: Path
    value: float | None = None


@dataclass
class PreparedJob:
    """A job ready for its rounds' training (Experiment.prepare), alone or in a fused group."""

    job: Job
    rounds: Rounds
    writer: RecordWriter
    recorder: RoundRecorder
    resume: ResumeCheckpoint
    tracker: Tracker | None
    started: float  # perf_counter when the job began


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
    fused_group: str | None = None  # set by fused.group when the job trains in a fused group

    def run(self) -> float:
        """Run the job, in its dir's lock and status (:meth:`session`)."""
        with self.session() as session:
            if session.value is None:
                session.value = self._run(session.base, session.status)
        return session.value

    @contextlib.contextmanager
    def session(self) -> Iterator[JobSession]:
        """The job dir's lock (one writer per job dir) and its ``status.json``, around whatever
        trains the job (:meth:`run`, or a fused group): running, then done, failed or interrupted
        (and why). A job done before comes with its value set: nothing to train."""
        lock = JobLock(self.job_dir) if is_main() else None  # (DDP) rank 0 writes, so it locks
        if lock is not None:
            lock.acquire()
        try:
            status = self.job_dir / STATUS_FILE
            previous = check_job_dir(self.job_dir, self.fingerprint)
            if previous.get("state") == "done":
                log.info("job already done (%s): nothing to train", self.job_dir)
                yield JobSession({}, status, float(previous["value"]))
                return
            check_accelerator(self.cfg.trainer.accelerator)
            # dense_cached: whether the dense run came from the cache when the job *first* got it
            # (a resumed job finds the run it trained itself in the cache).
            base = {"fingerprint": self.fingerprint, "overrides": self.overrides}
            if "dense_cached" in previous:
                base["dense_cached"] = previous["dense_cached"]
            write_status(status, {**base, "state": "running", "started": _now()})
            session = JobSession(base, status)
            try:
                yield session
            except BaseException as e:
                write_status(status, {**base, **final_state(e), "ended": _now()})
                self._close_tracker("failed")
                raise
            write_status(status, {**base, "state": "done", "value": session.value, "ended": _now()})
            self._close_tracker("success")
        finally:
            if lock is not None:
                lock.release()

    def _close_tracker(self, status: str) -> None:
        if self.tracker is not None and is_main():
            try:
                self.tracker.close(status)
            except Exception as e:  # the job's own outcome stands; the tracker's failure is logged
                log.warning("the tracker did not close cleanly: %s", e)

    def _run(self, base: dict, status: Path) -> float:
        """The job from the job cache when it has finished before (job_cache.py), else trained."""
        self.set_up()
        cached = self.job_cache()
        if cached is None:
            return self._train(base, status)
        cache, key = cached
        with cache.lock(key):
            value = self.restore(cache, key, base)
            if value is None:
                value = self._train(base, status)
                cache.publish(key, self.job_dir)
            return value

    def job_cache(self) -> tuple[JobCache, str] | None:
        """The job cache and this job's key in it; None where a job always trains (job_cache=false,
        or DDP)."""
        if not self.cfg.job_cache or world_size(self.cfg.trainer) > 1:
            return None
        key = job_key(self.fingerprint, self._data_digest, spec_hash(self.dense_spec(self._data_digest)))
        return JobCache(self.cfg.paths.cache_dir), key

    def restore(self, cache: JobCache, key: str, base: dict) -> float | None:
        """The job's records and files from the job cache into its dir, and its value; None when
        the cache does not hold it. The caller holds ``cache.lock(key)``."""
        rows = cache.restore(key, self.job_dir, self.overrides)
        if rows is None:
            return None
        log.info("job found in the job cache (%s): its records and files, nothing trained", key)
        (self.job_dir / RESUME_FILE).unlink(missing_ok=True)  # a killed attempt's, if any
        base["job_cached"] = key
        if self.tracker is not None and is_main():  # the tracker gets the config and the rounds
            self.tracker.start()
            for row in rows:
                self.tracker.record(row)
        return job_value(rows[-1], self.cfg.select_metric)

    def _train(self, base: dict, status: Path) -> float:
        """The job, as the algorithm reads: the dense stage (from the cache or trained once), then
        the rounds (prune, place the weights, retrain, measure, record), then the artifacts."""
        prepared = self.prepare(base, status)
        self.fit(prepared)
        return self.finish(prepared)

    def fit(self, prepared: PreparedJob) -> None:
        """The rounds, trained alone (stages.fit_rounds): resumable, with the tracker's curves."""
        tracker = prepared.tracker
        fit_rounds(
            prepared.job,
            prepared.rounds,
            log_dir=self.job_dir / RETRAIN_LOG_DIR,
            resume=prepared.resume,
            persist=[Persist("records", prepared.writer)],
            callbacks=tracker.callbacks if tracker else (),
            loggers=[tracker.logger] if tracker else (),
        )

    def prepare(self, base: dict, status: Path) -> PreparedJob:
        """Everything up to the rounds' training: the dense run, the records and the tracker
        started, the rounds built (stages.build_rounds)."""
        cfg, started = self.cfg, time.perf_counter()
        plan = plan_round(cfg.retrain, self._T, self.datamodule.steps_per_epoch)
        sparsities = sparsity_schedule(cfg.prune.sparsity, cfg.prune.schedule, cfg.prune.rate)
        gradual = None
        if cfg.prune.schedule == "gradual":  # the levels are its checkpoints; the pruner follows the ramp
            gradual = GradualPlan(tuple(sparsities), plan.epochs * self.datamodule.steps_per_epoch, cfg.prune.every)
        job = self._job()

        dense, cached = self._dense(job, plan, base, status)

        writer = RecordWriter(self.job_dir)
        tracker = self.tracker if is_main() else None
        if tracker is not None:
            tracker.start()
        info, on_row = self._info(plan, sparsities, dense, cached), tracker.record if tracker else None
        recorder = RoundRecorder(info, writer, self._meter(), dense_metrics(job, dense), on_row)
        rounds = build_rounds(
            job,
            dense,
            pruner_factory=lambda net: self._pruner(net, list(gradual.sparsities) if gradual else sparsities),
            plan=plan,
            finetune_lr=cfg.retrain.finetune_lr,
            log_dir=self.job_dir / RETRAIN_LOG_DIR,
            on_round_end=self._on_round_end(recorder),
            gradual=gradual,
        )
        resume = ResumeCheckpoint(self.job_dir / RESUME_FILE, cfg.trainer.checkpoint_every_s)
        return PreparedJob(job, rounds, writer, recorder, resume, tracker, started)

    def finish(self, prepared: PreparedJob) -> float:
        """Once the rounds have run: the final artifacts; the job's value."""
        rounds = prepared.rounds
        if is_main():
            save_artifacts(
                self.job_dir,
                rounds.module.net,
                rounds.cycle.mask,
                prunable=rounds.pruner.prunable_names,
                structure=self.structure.name,
                input_shape=self.datamodule.input_shape,
                output_layers=set(rounds.pruner.graph.output_layers),
                compacted=prepared.recorder.meter.compacted,
                export_csr=self.cfg.efficiency.export_csr,
            )
            prepared.resume.remove()  # the job is complete: mask, weights and records are all there is to keep
        log.info("job done in %.1fs: %s", time.perf_counter() - prepared.started, prepared.writer.path)
        return job_value(prepared.writer.rows[-1], self.cfg.select_metric)

    def _on_round_end(self, recorder: RoundRecorder) -> Callable[[RoundResult, PruneModule, Pruner], None]:
        """Each round, once retrained: its record, then its mask (and weights) under rounds/."""
        every_round = self.cfg.artifacts.every_round

        def on_round_end(result: RoundResult, module: PruneModule, pruner: Pruner) -> None:
            recorder.record(result, module, pruner)
            if is_main():
                net = module.net if every_round else None
                save_round(self.job_dir, result.round, result.mask, net, pruner.prunable_names)

        return on_round_end

    @functools.cached_property
    def _data_digest(self) -> str:
        """The loaded data's digest (after set_up), hashed once for the job and dense caches."""
        return self.datamodule.data_digest()

    @functools.cached_property
    def _T(self) -> float:
        """The dense run's length in epochs (a fraction with dense.iterations), once the data is loaded."""
        return dense_length(self.cfg.dense, self.datamodule.steps_per_epoch)

    @functools.cached_property
    def _task(self) -> Task:
        return Task.of(self.cfg.task, self.datamodule.num_classes)

    def set_up(self) -> None:
        """The process's threads and log levels; the data loaded (once: Lightning reuses it)."""
        if self.cfg.trainer.num_threads is not None:
            torch.set_num_threads(self.cfg.trainer.num_threads)
        for name in ("lightning.pytorch", "lightning.fabric"):  # keep job logs about the experiment
            logging.getLogger(name).setLevel(logging.WARNING)
        self.datamodule.world_size = world_size(self.cfg.trainer)
        self.datamodule.setup("fit")  # loads (or generates) the data once; Lightning reuses it

    def _job(self) -> Job:
        cfg = self.cfg
        return Job(
            datamodule=self.datamodule,
            build_net=self.build_net,
            optim=cfg.optim,
            schedule=LRSchedule(cfg.optim.lr, self._T, cfg.optim.schedule),
            trainer=cfg.trainer,
            seed=cfg.seed,
            progress_bar=self.progress_bar,
            task=cfg.task,
            dense_weights=Path(cfg.dense.weights) if cfg.dense.weights else None,
            rewind_weights={int(e): Path(f) for e, f in cfg.dense.rewind_weights.items()},
        )

    def _dense(self, job: Job, plan: RoundPlan, base: dict, status: Path) -> tuple[DenseRun, bool]:
        """The dense run and whether it came from the cache when this job *first* got it (a
        resumed job finds the run it trained itself in the cache); the status says so."""
        T, rewind = math.ceil(self._T), self.cfg.dense.rewind_epochs
        keep = set(range(T + 1)) if rewind is None else set(rewind)
        needed = plan.dense_epochs_needed(self.datamodule.steps_per_epoch)
        spec = self.dense_spec(self._data_digest)  # the data loaded, not just its config
        dense, cached = dense_stage(job, DenseCache(self.cfg.paths.cache_dir), spec, keep, needed)
        if "dense_cached" not in base:
            base["dense_cached"] = cached
            write_status(status, {**base, "state": "running", "started": _now()})
        return dense, base["dense_cached"]

    def _info(self, plan: RoundPlan, sparsities: list[float], dense: DenseRun, cached: bool) -> JobInfo:
        cfg = self.cfg
        return JobInfo(
            strategy=plan.strategy,
            criterion=self.criterion.name,
            structure=self.structure.name,
            scope=cfg.prune.scope,
            schedule=cfg.prune.schedule,
            rate=cfg.prune.rate,
            target=cfg.prune.sparsity,
            rounds=len(sparsities),
            budget=plan.epochs,
            seed=cfg.seed,
            dataset=self.names["data"],
            model=self.names["model"],
            optimizer=cfg.optim.name,
            select_metric=cfg.select_metric,
            metrics=self._task.describe(),
            dense_hash=dense.hash,
            dense_cached=cached,
            dense_epochs=self._T,
            dense_steps=int(dense.meta["steps"]),
            dense_seconds=float(dense.meta["seconds"]),
            job_dir=str(self.job_dir),
            overrides=self.overrides,
            host=socket.gethostname(),
            slurm_job_id=slurm_job_id(),
            world_size=world_size(cfg.trainer),
            fused_group=self.fused_group,
        )

    def _meter(self) -> RoundMeter:
        return RoundMeter(
            input_shape=self.datamodule.input_shape,
            examples=len(self.datamodule.train),
            dense_epochs=self._T,
            structure=self.structure.name,
            config=self.cfg.efficiency,
        )

    def _pruner(self, net: nn.Module, sparsities: list[float]) -> Pruner:
        pr = self.cfg.prune
        return Pruner(
            net,
            criterion=self.criterion,
            structure=self.structure,
            scope=pr.scope,
            sparsities=sparsities,
            seed=self.cfg.seed,
            include=pr.include,
            exclude=pr.exclude,
            layer_rate_scale=pr.layer_rate_scale,
            score_batches=self.datamodule.scoring_batches,
            score_loss=self._task.loss,
        )


def check_job_dir(job_dir: Path, fingerprint: str) -> dict:
    """The job dir's earlier status ({} if none); ConfigError if it belongs to another config.

    Called by the job and by the preflight (before Hydra writes into the dir)."""
    status = job_dir / STATUS_FILE
    if not status.exists():
        if (job_dir / RESUME_FILE).exists():
            raise ConfigError(f"{job_dir} holds a checkpoint but no {STATUS_FILE}; allowed: a fresh hydra.run.dir")
        return {}
    try:
        previous = json.loads(status.read_text())
    except ValueError:
        previous = {"state": "unreadable"}
    if previous.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"hydra.run.dir / hydra.sweep.dir: {job_dir} already holds a job of another config "
            f"(overrides {previous.get('overrides')}); allowed: that job's config (to resume it) or a fresh dir"
        )
    if previous.get("state") == "done" and not _complete(job_dir):
        previous["state"] = "incomplete"
    if (job_dir / RESUME_FILE).exists():  # a damaged checkpoint is refused now, every file as it was
        load_checkpoint(job_dir / RESUME_FILE, mmap=True)
    return previous


def _complete(job_dir: Path) -> bool:
    try:
        rows = read_records(job_dir / RECORDS_FILE)
    except (OSError, ValueError):
        return False
    return finished(job_dir, rows)


def final_state(e: BaseException) -> dict[str, str]:
    """The status of a job that ``e`` ended: interrupted by a signal or an exit request (the
    same command resumes it), else failed, with the reason."""
    if isinstance(e, (Interrupted, KeyboardInterrupt, SystemExit)):
        reason = str(e) if isinstance(e, Interrupted) else f"{type(e).__name__} {e}".strip()
        return {"state": "interrupted", "error": f"{reason}; the same command resumes it"}
    return {"state": "failed", "error": f"{type(e).__name__}: {e}"}


def write_status(path: Path, status: dict) -> None:
    """Atomically, by rank 0 (DDP: one writer). On a full disk the temp file cannot be written:
    the status is then overwritten in place (a small file keeps its block), so a job that
    dies of ENOSPC still says so."""
    if not is_main():
        return
    try:
        write_json(path, status)
    except OSError as e:
        try:
            with open(path, "r+" if path.exists() else "w") as f:  # write first, then cut: no block freed
                f.write(json.dumps(status, indent=2, sort_keys=True) + "\n")
                f.truncate()
        except OSError:
            log.error("cannot write %s (%s): the job's state is %s", path, e, status.get("state"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def job_value(row: dict[str, Any], select_metric: str) -> float:
    """What a job returns to Hydra (a sweeper optimizes it): its last round's val score; NaN
    without a val split (data.val_fraction=0), as the test score is never a thing to select on."""
    return float(row.get(f"val_{select_metric}", math.nan))
