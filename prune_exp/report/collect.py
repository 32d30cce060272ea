"""Read a sweep dir: every job's records and config, and which expected jobs are missing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from prune_exp.config import STRATEGY_KEYS
from prune_exp.store.files import JOB_OVERRIDES, MULTIRUN_FILE, RECORDS_FILE, STATUS_FILE, all_rounds_recorded
from prune_exp.store.jobdir import holder

# Config keys that are the axes of a comparison, not part of the setting being compared: what a
# strategy is (its name, parts and report style), the budget, the seed, the target sparsity.
AXES = {*(f"retrain.{k}" for k in STRATEGY_KEYS), "retrain.budget", "seed", "prune.sparsity", "name", "select_metric"}
AXIS_PREFIXES = tuple(f"retrain.{k}." for k in STRATEGY_KEYS)  # a strategy key's nested values (lr_rule's)
IGNORED_PREFIXES = ("paths.", "logger.", "trainer.progress_bar", "trainer.num_threads", "dense.rewind_epochs")


# What the state of a job means (the jobs table lists every job that is not done):
#   done         every round recorded, status.json says done (or nothing: records from elsewhere)
#   failed       status.json says failed, with the error
#   interrupted  status.json says interrupted (SIGTERM / SIGINT), with the reason
#   running      status.json says running and a live process holds the job dir's lock
#   killed       running or incomplete records, but no live process holds the lock
#   no records   a job dir without records (yet)
#   unreadable   a damaged file: records.jsonl, status.json or the job's .hydra config
#   missing      the sweep meant to run it, but it has no job dir
STATES = ("done", "failed", "interrupted", "running", "killed", "no records", "unreadable", "missing")
# Columns the report needs in every record (columns.RoundInfo and JobInfo: every row has them).
REQUIRED = ("round", "seed", "strategy", "budget", "target_sparsity", "sparsity", "compression")


@dataclass
class JobProgress:
    """One job of the sweep: where it is, what it was asked to do, how far it got."""

    overrides: list[str]
    dir: Path | None = None
    state: str = "missing"  # one of STATES
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
    jobs: list[JobProgress] = field(default_factory=list)
    unknown_jobs: str = ""  # why the sweep's own list of jobs could not be read ("": read, or none kept)

    @property
    def config_columns(self) -> list[str]:
        return [c for c in self.results.columns if "." in c]


class Unreadable(ValueError):
    """A file of a job dir is damaged; the message says which and how."""


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


def _short(e: Exception) -> str:
    """An error in one line, for the jobs table."""
    return " ".join(str(e).split())[:200]


def read_records_checked(path: Path) -> list[dict[str, Any]]:
    """The rows of a records file ([] if it is missing or empty); Unreadable naming the line of
    the first one that is not a record. Records are rewritten atomically, so a truncated last
    line is damage, not a write in progress."""
    if not path.exists():
        return []
    rows = []
    for num, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise Unreadable(f"{path.name} line {num}: not UTF-8 text ({_short(e)})") from None
        except ValueError as e:
            raise Unreadable(f"{path.name} line {num}: not JSON ({_short(e)})") from None
        if not isinstance(row, dict):
            raise Unreadable(f"{path.name} line {num}: not a record (a JSON {type(row).__name__}, not an object)")
        lacking = [k for k in REQUIRED if k not in row]
        if lacking or not isinstance(row["round"], int):
            raise Unreadable(f"{path.name} line {num}: not a record (no {', '.join(lacking) or 'integer round'})")
        rows.append(row)
    return rows


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file ({} if missing); Unreadable if it is not one."""
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError is a ValueError too
        raise Unreadable(f"{path.name}: not JSON ({_short(e)})") from None
    if not isinstance(value, dict):
        raise Unreadable(f"{path.name}: not a JSON object")
    return value


def _read_yaml(path: Path, kind: type, what: str) -> Any:
    """A YAML file holding a ``kind`` (None if missing); Unreadable naming ``what`` it should be."""
    if not path.exists():
        return None
    try:
        value = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (ValueError, yaml.YAMLError) as e:
        raise Unreadable(f".hydra/{path.name}: not YAML ({_short(e)})") from None
    value = kind() if value is None else value
    if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
        raise Unreadable(f".hydra/{path.name}: not {what}")
    return value


def _job_status(
    job_dir: Path, overrides: list[str], rows: list[dict[str, Any]], status: dict[str, Any], sweep_dir: Path
) -> JobProgress:
    """The state of a readable job dir (see STATES), from its status, records and lock."""
    st = JobProgress(overrides=overrides, dir=job_dir)
    state = status.get("state")
    st.rounds = rows[-1].get("rounds") if rows else None
    st.rounds_done = max((r["round"] for r in rows), default=0)
    complete = all_rounds_recorded(rows)
    recorded = f"{st.rounds_done} of {st.rounds if st.rounds is not None else '?'} rounds recorded"
    if state not in (None, "running", "done", "failed", "interrupted"):
        st.state, st.detail = "unreadable", f"status.json: unknown state {state!r}"
    elif state in ("failed", "interrupted"):
        st.state, st.detail = state, str(status.get("error") or status.get("reason") or "")
    elif complete and state in (None, "done"):
        st.state = "done"
    elif rows or state == "running":
        who = _holder(job_dir)
        if who is not None:
            st.state, st.detail = "running", f"host {who.get('host', '?')}, pid {who.get('pid', '?')}, {recorded}"
        else:
            st.state = "killed"
            st.detail = (
                f"{recorded}; no live process holds the job dir; rerun the sweep command with "
                f"hydra.sweep.dir={sweep_dir} to resume it"
            )
    else:
        st.state = "no records"
    return st


def _holder(job_dir: Path) -> dict[str, Any] | None:
    """The live holder of the job dir's lock, or None (also when the lock file cannot be read)."""
    try:
        return holder(job_dir)
    except OSError:
        return None


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The overrides of every job the sweep launches, from its multirun.yaml (basic sweeper); None
    without one or for another sweeper; Unreadable for a damaged one: the jobs are then unknown."""
    path = sweep_dir / MULTIRUN_FILE
    if not path.exists():
        return None
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from prune_exp.store.sweep import sweep_job_overrides

    try:
        config = OmegaConf.load(path)
    except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException) as e:
        raise Unreadable(f"{MULTIRUN_FILE}: not YAML ({_short(e)})") from None
    if not isinstance(config, DictConfig):
        raise Unreadable(f"{MULTIRUN_FILE}: not a config (a mapping)")
    # Hydra writes both into every multirun.yaml: without them the file was cut short
    lacking = [k for k in ("hydra.sweeper._target_", "hydra.overrides.task") if OmegaConf.select(config, k) is None]
    if lacking:
        raise Unreadable(f"{MULTIRUN_FILE}: not the whole of Hydra's file (no {', '.join(lacking)})")
    try:
        return sweep_job_overrides(config)
    except Exception as e:  # Hydra's override parser raises its own kinds
        raise Unreadable(f"{MULTIRUN_FILE}: its overrides cannot be read ({_short(e)})") from None


def _resolved_retrain(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with its ``retrain`` node's interpolations resolved where the file alone can resolve
    them, as the preflight compares it: two strategies are told apart by values, not spelling."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg.get("retrain"), dict):
        return cfg
    try:
        retrain = OmegaConf.to_container(OmegaConf.create(cfg).retrain, resolve=True)
    except (OmegaConfBaseException, ValueError):
        return cfg  # an interpolation only the job could resolve: its text
    return {**cfg, "retrain": retrain}


def _load_job(job_dir: Path, sweep_dir: Path, overrides: list[str]) -> tuple[JobProgress, pd.DataFrame | None]:
    """One job dir: its status and its rows with its config; an unreadable job has no rows."""
    try:
        rows = read_records_checked(job_dir / RECORDS_FILE)
        status = _job_status(job_dir, overrides, rows, _read_json(job_dir / STATUS_FILE), sweep_dir)
        cfg = _resolved_retrain(_read_yaml(job_dir / ".hydra" / "config.yaml", dict, "a config (a mapping)") or {})
    except (Unreadable, OSError) as e:
        return JobProgress(overrides=overrides, dir=job_dir, state="unreadable", detail=_short(e)), None
    if not rows or status.state == "unreadable":
        return status, None
    df = pd.DataFrame(rows)
    for k, v in flatten(cfg).items():
        if k not in df.columns:
            df[k] = v
    df["job"] = job_dir.relative_to(sweep_dir).as_posix()
    df["job_state"] = status.state
    return status, df


def _overrides(ov_file: Path, expected: list[list[str]] | None) -> tuple[list[str], str]:
    """A job's overrides and, if its overrides.yaml is damaged, why. A damaged job numbered N by
    Hydra is the sweep's job N, so it stays matched to the job the sweep meant to run."""
    try:
        return _read_yaml(ov_file, list, "a list of overrides") or [], ""
    except (Unreadable, OSError) as e:
        name = ov_file.parent.parent.name
        guess = expected[int(name)] if expected and name.isdigit() and int(name) < len(expected) else []
        return list(guess), _short(e)


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Every job dir under ``sweep_dir`` (a dir with ``.hydra/overrides.yaml``), its records and
    config, and the status of every job the sweep was meant to run. A job dir with a damaged
    file is listed as unreadable, with the reason, and contributes no rows. A damaged
    multirun.yaml leaves the jobs the sweep meant to run unknown (``unknown_jobs`` says why)."""
    sweep_dir = Path(sweep_dir)
    try:
        expected, unknown = expected_jobs(sweep_dir), ""
    except Unreadable as e:
        expected, unknown = None, str(e)
    frames, found = [], {}
    for ov_file in sorted(sweep_dir.rglob(JOB_OVERRIDES), key=lambda p: _natural(p, sweep_dir)):
        job_dir = ov_file.parent.parent
        overrides, problem = _overrides(ov_file, expected)
        if problem:
            status, df = JobProgress(overrides=overrides, dir=job_dir, state="unreadable", detail=problem), None
        else:
            status, df = _load_job(job_dir, sweep_dir, overrides)
        found[tuple(sorted(overrides)) if overrides else ("?", str(job_dir))] = status
        if df is not None:
            frames.append(df)
    jobs = list(found.values())
    if expected is not None:
        keys = {tuple(sorted(ov)) for ov in expected}
        jobs = [found.get(tuple(sorted(ov)), JobProgress(overrides=ov)) for ov in expected]
        jobs += [s for key, s in found.items() if key not in keys]
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Sweep(dir=sweep_dir, results=results, jobs=jobs, unknown_jobs=unknown)


def _natural(path: Path, root: Path) -> list[tuple[int, str]]:
    """A sort key in which job dir 2 comes before job dir 10: the order the sweep ran its jobs."""
    return [(int(p), "") if p.isdigit() else (-1, p) for p in path.relative_to(root).parts]


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


def setting_columns(df: pd.DataFrame, tuned: tuple[str, ...] = ()) -> list[str]:
    """Config columns that vary across the sweep's jobs and are not a comparison axis (nor a
    key a tuning sweep searched: report/tuning.py): each combination of their values is a
    separate setting with its own tables."""
    axes = {*AXES, *tuned}
    cols = [
        c for c in df.columns if "." in c and c not in axes and not c.startswith((*IGNORED_PREFIXES, *AXIS_PREFIXES))
    ]
    if not cols:  # records without their config: fall back to the record's descriptors
        cols = [c for c in DESCRIPTORS if c in df.columns]
    return [c for c in cols if df[c].astype(str).nunique() > 1]
