"""Read a sweep dir: every job's records and config, and which expected jobs are missing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from prune_exp.records import RECORDS_FILE, STATUS_FILE, read_records

# Config keys that are the axes of a comparison, not part of the setting being compared.
AXES = {"retrain.strategy", "retrain.budget", "seed", "prune.sparsity", "name", "select_metric"}
IGNORED_PREFIXES = ("paths.", "trainer.progress_bar", "trainer.num_threads", "dense.rewind_epochs")


@dataclass
class JobStatus:
    """One job of the sweep: where it is, what it was asked to do, how far it got."""

    overrides: list[str]
    dir: Path | None = None
    state: str = "missing"  # done | failed | running or killed | no records | missing
    rounds_done: int = 0
    rounds: int | None = None
    detail: str = ""

    @property
    def done(self) -> bool:
        return self.state == "done"


@dataclass
class Sweep:
    dir: Path
    results: pd.DataFrame  # one row per job x round: the records plus the job's flattened config
    jobs: list[JobStatus] = field(default_factory=list)

    @property
    def config_columns(self) -> list[str]:
        return [c for c in self.results.columns if "." in c]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become JSON strings so every cell is a scalar."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, dict)) else v
    return out


def _job_status(job_dir: Path, overrides: list[str], rows: list[dict[str, Any]]) -> JobStatus:
    st = JobStatus(overrides=overrides, dir=job_dir)
    status = json.loads((job_dir / STATUS_FILE).read_text()) if (job_dir / STATUS_FILE).exists() else {}
    st.rounds = rows[-1].get("rounds") if rows else None
    st.rounds_done = max((r["round"] for r in rows), default=0)
    complete = bool(rows) and st.rounds is not None and st.rounds_done >= st.rounds
    if status.get("state") == "failed":
        st.state, st.detail = "failed", status.get("error", "")
    elif complete and status.get("state", "done") == "done":
        st.state = "done"
    elif rows or status.get("state") == "running":
        st.state = "running or killed"
        st.detail = f"{st.rounds_done} of {st.rounds if st.rounds is not None else '?'} rounds recorded"
    else:
        st.state = "no records"
    return st


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The overrides of every job the sweep launches, from its multirun.yaml (basic sweeper)."""
    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return None
    from omegaconf import OmegaConf

    from prune_exp.hydra_callbacks import sweep_job_overrides

    try:
        return sweep_job_overrides(OmegaConf.load(path))
    except Exception:
        return None


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Every job dir under ``sweep_dir`` (a dir with ``.hydra/overrides.yaml``), its records and
    config, and the status of every job the sweep was meant to run."""
    sweep_dir = Path(sweep_dir)
    frames, found = [], {}
    for ov_file in sorted(sweep_dir.rglob(".hydra/overrides.yaml")):
        job_dir = ov_file.parent.parent
        overrides = list(yaml.safe_load(ov_file.read_text()) or [])
        rows = read_records(job_dir / RECORDS_FILE) if (job_dir / RECORDS_FILE).exists() else []
        status = _job_status(job_dir, overrides, rows)
        found[tuple(sorted(overrides))] = status
        if rows:
            cfg_file = job_dir / ".hydra" / "config.yaml"
            cfg = flatten(yaml.safe_load(cfg_file.read_text())) if cfg_file.exists() else {}
            df = pd.DataFrame(rows)
            for k, v in cfg.items():
                if k not in df.columns:
                    df[k] = v
            df["job"] = job_dir.relative_to(sweep_dir).as_posix()
            df["job_state"] = status.state
            frames.append(df)
    jobs = list(found.values())
    expected = expected_jobs(sweep_dir)
    if expected is not None:
        jobs = [found.get(tuple(sorted(ov)), JobStatus(overrides=ov)) for ov in expected]
        jobs += [s for key, s in found.items() if key not in {tuple(sorted(ov)) for ov in expected}]
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Sweep(dir=sweep_dir, results=results, jobs=jobs)


# Record columns that describe a job's setting (what the summary prints as its header).
DESCRIPTORS = [
    "dataset",
    "model",
    "optimizer",
    "criterion",
    "structure",
    "scope",
    "schedule",
    "rate",
    "dense_epochs",
    "select_metric",
]


def setting_columns(df: pd.DataFrame) -> list[str]:
    """Config columns that vary across the sweep's jobs and are not a comparison axis: each
    combination of their values is a separate setting with its own tables."""
    cols = [c for c in df.columns if "." in c and c not in AXES and not c.startswith(IGNORED_PREFIXES)]
    if not cols:  # records without their config: fall back to the record's descriptors
        cols = [c for c in DESCRIPTORS if c in df.columns]
    return [c for c in cols if df[c].astype(str).nunique() > 1]
