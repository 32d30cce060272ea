"""The files of a job dir, a sweep dir and the caches, by name, and when a job is complete.

The job (job/) writes them and decides from them whether a rerun has anything left
to do; the report (report/collect.py) reads them and decides from them whether a job is done.
Standard library only: the report imports it without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECORDS_FILE = "records.jsonl"  # one row per round (round 0: the dense model), records.py
STATUS_FILE = "status.json"  # {"state": "running" | "done" | "failed" | "interrupted", ...}, rewritten atomically
LOCK_FILE = "job.lock"  # held by the one live writer (jobdir.py); names it
MASK_FILE = "mask.safetensors"  # the final mask; metadata "prunable": the scored weights, as a JSON list
WEIGHTS_FILE = "weights.safetensors"  # the final weights
CSR_FILE = "final_csr.safetensors"  # unstructured / N:M: the final weights, masked ones as CSR (csr.py)
ROUNDS_DIR = "rounds"  # every round's mask (1 bit per weight), and weights with artifacts.every_round
COMPACT_FILE = "compact.safetensors"  # channel pruning: the compacted model's weights (compact.py)
COMPACT_PLAN_FILE = "compact.json"  # and its plan
RETRAIN_LOG_DIR = "retrain_log"  # the prune-retrain stage's per-epoch CSV log
JOB_OVERRIDES = ".hydra/overrides.yaml"  # Hydra writes it in every job dir: the job's overrides
MULTIRUN_FILE = "multirun.yaml"  # in a sweep dir: the sweep's config (so its list of jobs), as it started
RESUME_FILE = "resume.ckpt"  # a stage's training state while it is unfinished (checkpoint.py)
DENSE_REPLAY_DIR = "dense_replay"  # under retrain_log/: the log of a replay to a rewind point inside an epoch
FUSED_DIR = ".fused"  # in a sweep dir: each fused group's Lightning log and checkpoint, <group id>/
RESULTS_FILE = "results.csv"  # in a sweep dir: the report's tidy table (report/)
SUMMARY_FILE = "summary.md"  # in a sweep dir: the report (report/)
TUNING_FILE = "optimization_results.yaml"  # in a sweep dir: a tuning sweeper's (Optuna's, Nevergrad's) best trial
DENSE_CACHE_DIR = "dense"  # under paths.cache_dir: dense runs, <spec hash>/epoch_0000.safetensors ... (dense_cache.py)
JOB_CACHE_DIR = "jobs"  # under paths.cache_dir: finished jobs, <key>/ (job_cache.py)
DENSE_META_FILE = "meta.json"  # in a dense cache entry: what trained it, each epoch file's sha256
JOB_MANIFEST_FILE = "manifest.json"  # in a job cache entry: {"key", "files": {relative path: sha256}, ...}
# What a finished job produced: the job cache (job_cache.py) keeps these and gives them to a rerun.
RESULT_FILES = (
    RECORDS_FILE,
    MASK_FILE,
    WEIGHTS_FILE,
    CSR_FILE,
    COMPACT_FILE,
    COMPACT_PLAN_FILE,
    ROUNDS_DIR,
    RETRAIN_LOG_DIR,
)


def epoch_file(epoch: int) -> str:
    """A dense cache entry's weights and buffers at the start of dense epoch ``epoch`` (0: init, T: final)."""
    return f"epoch_{epoch:04d}.safetensors"


def cache_lock_file(key: str) -> str:
    """The lock of a dense run's (its hash) or a job's (its key) cache entry, beside the entry."""
    return f"{key}.lock"


def dense_partial_dir(spec_hash: str) -> str:
    """Where a dense run trains before it is published (a killed run resumes there)."""
    return f".{spec_hash}.partial"


def job_partial_dir(key: str) -> str:
    """Where a finished job's files are copied before its entry is published."""
    return f"{key}.partial"


def round_mask_file(round_: int) -> str:
    return f"{ROUNDS_DIR}/mask_{round_:03d}.safetensors"


def round_weights_file(round_: int) -> str:
    return f"{ROUNDS_DIR}/weights_{round_:03d}.safetensors"


def all_rounds_recorded(rows: list[dict[str, Any]]) -> bool:
    """The records have a row for every round the job was to run (the report's "done")."""
    return bool(rows) and rows[-1].get("rounds") is not None and max(r["round"] for r in rows) >= rows[-1]["rounds"]


def finished(job_dir: Path, rows: list[dict[str, Any]]) -> bool:
    """Every round recorded and the final mask written: a rerun of the job has nothing to do."""
    return all_rounds_recorded(rows) and (job_dir / MASK_FILE).exists()
