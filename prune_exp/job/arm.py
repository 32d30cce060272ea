"""A job made ready to train its rounds (prepare: the dense stage, the records, the rounds
built), and what it leaves once they have run (finish: the artifacts, the value). The same for
a job trained alone and for an arm of a fused group.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prune_exp.dist import is_main
from prune_exp.job.artifacts import save_artifacts
from prune_exp.job.dense import dense_metrics, dense_stage
from prune_exp.job.experiment import Experiment, job_value
from prune_exp.job.recorder import RoundRecorder
from prune_exp.job.rounds import Rounds, build_rounds, dense_module
from prune_exp.job.tracking import Tracker
from prune_exp.lit.trainer import Job
from prune_exp.store.checkpoint import ResumeCheckpoint
from prune_exp.store.dense_cache import DenseCache
from prune_exp.store.files import RESUME_FILE, RETRAIN_LOG_DIR
from prune_exp.store.records import RecordWriter

log = logging.getLogger("prune_exp")


@dataclass
class Arm:
    """A job ready for its rounds' training, alone or in a fused group."""

    job: Experiment
    recipe: Job
    rounds: Rounds
    writer: RecordWriter
    recorder: RoundRecorder
    resume: ResumeCheckpoint
    tracker: Tracker | None
    started: float  # perf_counter when the job began


def prepare(e: Experiment, fused_group: str | None, dense_trained: bool = False) -> Arm:
    """The dense run (from the cache or trained once), the records and the tracker started, the
    rounds built with the recorder as their ``on_round_end``. ``dense_trained``: the job's group
    has just trained its dense run into the cache for it (job/dense_group.py)."""
    cfg, started, recipe = e.cfg, time.perf_counter(), e.recipe()
    spec = e.dense_spec(e.data_digest)  # the data loaded, not just its config
    dense, cached = dense_stage(
        recipe, DenseCache(cfg.paths.cache_dir), spec, e.dense_epochs_kept(), e.plan.dense_epochs_needed
    )
    cached = e.status.note_dense(cached and not dense_trained)
    writer = RecordWriter(e.job_dir)
    tracker = e.tracker if is_main() else None
    if tracker is not None:
        tracker.start()
    measured = dense_metrics(recipe, dense)
    module = dense_module(recipe, dense)
    pruner = e.pruner(module.net)
    recorder = RoundRecorder(
        e.info(dense, cached, fused_group),
        writer,
        e.meter(),
        measured,
        module,
        pruner,
        on_row=tracker.record if tracker else None,
        job_dir=e.job_dir,
        every_round=cfg.artifacts.every_round,
    )
    rounds = build_rounds(
        recipe,
        dense,
        module,
        pruner,
        plan=e.plan.round,
        lr=e.plan.lr,
        log_dir=e.job_dir / RETRAIN_LOG_DIR,
        on_round_end=recorder.record,
        gradual=e.plan.gradual,
        dense_metrics=measured,
    )
    resume = ResumeCheckpoint(e.job_dir / RESUME_FILE, cfg.trainer.checkpoint_every_s)
    return Arm(e, recipe, rounds, writer, recorder, resume, tracker, started)


def finish(arm: Arm) -> float:
    """Once the rounds have run: the final artifacts; the job's value."""
    e, rounds = arm.job, arm.rounds
    if is_main():
        save_artifacts(
            e.job_dir,
            rounds.module.net,
            rounds.cycle.mask,
            prunable=rounds.pruner.prunable_names,
            structure=e.structure.name,
            input_shape=e.datamodule.input_shape,
            output_layers=set(rounds.pruner.graph.output_layers),
            compacted=arm.recorder.meter.compacted,
            export_csr=e.cfg.efficiency.export_csr,
        )
        arm.resume.remove()  # the job is complete: mask, weights and records are all there is to keep
    log.info("job done in %.1fs: %s", time.perf_counter() - arm.started, arm.writer.path)
    return job_value(arm.writer.rows[-1], e.cfg.select_metric)
