"""One job: the dense stage, the prune-retrain stage, records and final artifacts.

A job is resumable: started again in the same job dir with the same config (a SLURM
requeue, or a rerun with ``hydra.run.dir`` / ``hydra.sweep.dir`` of the killed run), it
continues from its last epoch; a job that finished does no training and returns its
result. A job dir that holds a job of a different config is refused.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from prune_exp.atomic import write_json
from prune_exp.cache import DenseCache, save_state
from prune_exp.checkpoint import RESUME_FILE, Persist, ResumeCheckpoint, load_checkpoint
from prune_exp.compact import compact, save_compacted
from prune_exp.config import ConfigError, RunConfig, check_accelerator, world_size
from prune_exp.csr import csr_linear_names, csr_model, save_csr
from prune_exp.data.base import TensorDataModule
from prune_exp.dist import is_main, tensors_digest
from prune_exp.efficiency import FlopProfile, effective_flops, flop_profile, measure_speed, param_bytes
from prune_exp.interrupt import Interrupted
from prune_exp.jobdir import JobLock
from prune_exp.lit.callbacks import RoundResult
from prune_exp.lit.module import PruneModule
from prune_exp.pruning.criteria import Criterion
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner, sparsity_schedule
from prune_exp.pruning.structure import Structure
from prune_exp.records import (
    RECORDS_FILE,
    STATUS_FILE,
    JobInfo,
    ParamCounts,
    RecordWriter,
    make_row,
    read_records,
    slurm_job_id,
)
from prune_exp.retrain.schedules import LRSchedule
from prune_exp.retrain.strategies import plan_round
from prune_exp.stages import Job, dense_stage, prune_retrain_stage

log = logging.getLogger("prune_exp")

MASK_FILE = "mask.safetensors"  # metadata "prunable": the scored weights, as a JSON list
WEIGHTS_FILE = "weights.safetensors"
CSR_FILE = "final_csr.safetensors"  # unstructured / N:M: the final weights, masked ones as CSR (csr.py)
SPARSE_STRUCTURES = ("unstructured", "nm")  # element-wise masks: the ones a CSR kernel can exploit


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

    def run(self) -> float:
        """Run the job, holding its dir's lock throughout (one writer per job dir)."""
        lock = JobLock(self.job_dir) if is_main() else None  # (DDP) rank 0 writes, so it locks
        if lock is not None:
            lock.acquire()
        try:
            return self._run_in_dir()
        finally:
            if lock is not None:
                lock.release()

    def _run_in_dir(self) -> float:
        """``status.json`` says running, then done, failed or interrupted (and why)."""
        status = self.job_dir / STATUS_FILE
        previous = check_job_dir(self.job_dir, self.fingerprint)
        if previous.get("state") == "done":
            log.info("job already done (%s): nothing to train", self.job_dir)
            return float(previous["value"])
        check_accelerator(self.cfg.trainer.accelerator)
        # dense_cached: whether the dense run came from the cache when the job *first* got it
        # (a resumed job finds the run it trained itself in the cache).
        base = {"fingerprint": self.fingerprint, "overrides": self.overrides}
        if "dense_cached" in previous:
            base["dense_cached"] = previous["dense_cached"]
        write_status(status, {**base, "state": "running", "started": _now()})
        try:
            value = self._run(base, status)
        except BaseException as e:
            write_status(status, {**base, **final_state(e), "ended": _now()})
            raise
        write_status(status, {**base, "state": "done", "value": value, "ended": _now()})
        return value

    def _run(self, base: dict, status: Path) -> float:
        cfg = self.cfg
        started = time.perf_counter()
        if cfg.trainer.num_threads is not None:
            torch.set_num_threads(cfg.trainer.num_threads)
        for name in ("lightning.pytorch", "lightning.fabric"):  # keep job logs about the experiment
            logging.getLogger(name).setLevel(logging.WARNING)
        self.datamodule.world_size = world_size(cfg.trainer)
        self.datamodule.setup("fit")  # loads (or generates) the data once; Lightning reuses it
        T = cfg.dense.epochs
        plan = plan_round(cfg.retrain, T, self.datamodule.steps_per_epoch)
        sparsities = sparsity_schedule(cfg.prune.sparsity, cfg.prune.schedule, cfg.prune.rate)
        job = Job(
            datamodule=self.datamodule,
            build_net=self.build_net,
            optim=cfg.optim,
            schedule=LRSchedule(cfg.optim.lr, T, cfg.optim.schedule),
            trainer=cfg.trainer,
            seed=cfg.seed,
            progress_bar=self.progress_bar,
        )

        keep = set(range(T + 1)) if cfg.dense.rewind_epochs is None else set(cfg.dense.rewind_epochs)
        needed = plan.dense_epochs_needed(self.datamodule.steps_per_epoch)
        spec = self.dense_spec(self.datamodule.data_digest())  # the data loaded above, not just its config
        dense, cached = dense_stage(job, DenseCache(cfg.paths.cache_dir), spec, keep, needed)
        if "dense_cached" not in base:
            base["dense_cached"] = cached
            write_status(status, {**base, "state": "running", "started": _now()})
        cached = base["dense_cached"]

        info = JobInfo(
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
            dense_hash=dense.hash,
            dense_cached=cached,
            dense_epochs=T,
            dense_steps=int(dense.meta["steps"]),
            dense_seconds=float(dense.meta["seconds"]),
            job_dir=str(self.job_dir),
            overrides=self.overrides,
            host=socket.gethostname(),
            slurm_job_id=slurm_job_id(),
            world_size=world_size(cfg.trainer),
        )
        writer = RecordWriter(self.job_dir)
        profiles: list[FlopProfile] = []  # the dense forward FLOPs, counted once
        last_compacted: list[tuple[nn.Module, list]] = []  # channel runs: the latest round's compacted model
        examples = len(self.datamodule.train)  # per epoch

        def efficiency(module: PruneModule, mask: Mask, epochs: int) -> dict:
            """FLOPs, bytes, speed and training cost for a record row. Training FLOPs are
            3 x forward FLOPs per example (forward + backward) x examples seen, with the dense
            kernels a masked model runs on; the dense stage is counted in every job's total."""
            if not profiles:
                profiles.append(flop_profile(module.net, self.datamodule.input_shape))
            p = profiles[0]
            eff = effective_flops(p, mask)
            dense_bytes, nonzero_bytes = param_bytes(module.net, mask)
            dense_train = 3 * p.total * examples * T
            train = 3 * p.total * examples * epochs
            out = {
                "flops_dense": p.total,
                "flops_effective": eff,
                "theoretical_speedup": p.total / max(eff, 1),
                "param_bytes_dense": dense_bytes,
                "param_bytes_nonzero": nonzero_bytes,
                "train_flops": train,
                "dense_train_flops": dense_train,
                "cum_train_flops": (writer.rows[-1]["cum_train_flops"] if writer.rows else dense_train) + train,
            }
            ef = cfg.efficiency
            shape = self.datamodule.input_shape
            if ef.measure_speed:
                out["latency_ms"], out["throughput"] = measure_speed(
                    module.net, shape, batch=ef.batch, warmup=ef.warmup, reps=ef.reps
                )
            if self.structure.name == "channel":  # the physically smaller model: exact FLOPs, real speed
                small, plan = compact(module.net, mask, shape, skip=pruner_outputs[0])
                last_compacted[:] = [(small, plan)]  # the last round's is the job's: saved at the end
                out["flops_compacted"] = flop_profile(small, shape).total
                out["params_compacted"] = sum(p.numel() for p in small.parameters())
                if ef.measure_speed:
                    out["latency_ms_compacted"], out["throughput_compacted"] = measure_speed(
                        small, shape, batch=ef.batch, warmup=ef.warmup, reps=ef.reps
                    )
            if ef.measure_speed and self.structure.name in SPARSE_STRUCTURES and csr_linear_names(module.net, mask):
                # the masked linear layers on a CSR kernel (convolutions stay dense): real sparse speed
                out["latency_ms_csr"], out["throughput_csr"] = measure_speed(
                    csr_model(module.net, mask), shape, batch=ef.batch, warmup=ef.warmup, reps=ef.reps
                )
            return out

        pruner_outputs: list[set[str]] = []  # the network's output layers (never compacted away)

        def on_round_end(result: RoundResult, module: PruneModule, pruner: Pruner) -> None:
            if not pruner_outputs:
                pruner_outputs.append(set(pruner.graph.output_layers))
            total = sum(p.numel() for p in module.net.parameters())
            if not writer.rows:  # round 0: the dense model, as loaded from the dense run
                counts = ParamCounts.of(pruner.initial_mask(), pruner.prunable_names, total)
                dense_efficiency = efficiency(module, pruner.initial_mask(), 0)
                writer.append(
                    make_row(
                        info,
                        round_=0,
                        target_sparsity=0.0,
                        counts=counts,
                        mask_sha256=tensors_digest(dict(pruner.initial_mask())),
                        pruned={},
                        retrained=dense.meta["metrics"],
                        epochs=0,
                        steps=0,
                        seconds=0.0,
                        cum_epochs=T,
                        cum_steps=info.dense_steps,
                        cum_seconds=info.dense_seconds,
                        efficiency=dense_efficiency,
                    )
                )
            last = writer.rows[-1]
            counts = ParamCounts.of(result.mask, pruner.prunable_names, total)
            round_efficiency = efficiency(module, result.mask, result.epochs)
            writer.append(
                make_row(
                    info,
                    round_=result.round,
                    target_sparsity=result.target_sparsity,
                    counts=counts,
                    mask_sha256=result.mask_digest,
                    pruned=result.pruned,
                    retrained=result.retrained,
                    epochs=result.epochs,
                    steps=result.steps,
                    seconds=result.seconds,
                    cum_epochs=last["cum_epochs"] + result.epochs,
                    cum_steps=last["cum_steps"] + result.steps,
                    cum_seconds=last["cum_seconds"] + result.seconds,
                    efficiency=round_efficiency,
                )
            )
            row = writer.rows[-1]
            log.info(
                "round %d/%d  sparsity %.4f  compression %.2fx  val_acc pruned %.4f -> retrained %.4f  test_acc %.4f",
                result.round,
                pruner.rounds,
                row["sparsity"],
                row["compression"],
                row.get("pruned_val_acc", float("nan")),
                row["val_acc"],
                row["test_acc"],
            )

        def make_pruner(net: nn.Module) -> Pruner:
            return Pruner(
                net,
                criterion=self.criterion,
                structure=self.structure,
                scope=cfg.prune.scope,
                sparsities=sparsities,
                seed=cfg.seed,
                include=cfg.prune.include,
                exclude=cfg.prune.exclude,
                layer_rate_scale=cfg.prune.layer_rate_scale,
                score_batches=self.datamodule.scoring_batches,
            )

        resume = ResumeCheckpoint(self.job_dir / RESUME_FILE, cfg.trainer.checkpoint_every_s)
        module, pruner, mask = prune_retrain_stage(
            job,
            dense,
            pruner_factory=make_pruner,
            plan=plan,
            finetune_lr=cfg.retrain.finetune_lr,
            log_dir=self.job_dir / "retrain_log",
            on_round_end=on_round_end,
            resume=resume,
            persist=[Persist("records", writer)],
        )
        if is_main():
            mask.save(self.job_dir / MASK_FILE, prunable=pruner.prunable_names)
            save_state(self.job_dir / WEIGHTS_FILE, module.net.state_dict())
            if self.structure.name == "channel":  # compact.safetensors + compact.json, next to the masked model
                if not last_compacted:  # resumed after the last round: compact the final model now
                    shape, outputs = self.datamodule.input_shape, set(pruner.graph.output_layers)
                    last_compacted.append(compact(module.net, mask, shape, skip=outputs))
                save_compacted(self.job_dir, *last_compacted[0])
            if self.structure.name in SPARSE_STRUCTURES and cfg.efficiency.export_csr:
                save_csr(self.job_dir / CSR_FILE, module.net.state_dict(), mask)
            resume.remove()  # the job is complete: mask, weights and records are all there is to keep
        log.info("job done in %.1fs: %s", time.perf_counter() - started, writer.path)
        return float(writer.rows[-1][f"val_{cfg.select_metric}"])


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
    return bool(rows) and rows[-1]["round"] == rows[-1]["rounds"] and (job_dir / MASK_FILE).exists()


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
