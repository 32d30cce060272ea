"""Jobs that need the same dense run at the same time, as separate processes (a sweep on SLURM
or the local parallel launcher): the dense model is trained exactly once, the others wait
and reuse it, and a reader polling the files meanwhile never sees a partial one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from prune_exp.store.records import read_records

pytestmark = pytest.mark.slow

ARGS = ["debug=fast", "data.num_samples=6000", "dense.epochs=4", "retrain.budget=1"]
STRATEGIES = ("finetune", "weight_rewind", "lr_rewind")


def test_concurrent_jobs_train_the_shared_dense_run_once(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "prune_exp", *ARGS, f"retrain={s}", f"hydra.run.dir=outputs/{s}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for s in STRATEGIES
    ]

    # A reader that keeps parsing every JSON file the jobs and the cache write, while they run.
    reads, bad, done = [0], [], threading.Event()

    def read_everything() -> None:
        while not done.is_set():
            for path in [*tmp_path.glob("outputs/*/status.json"), *tmp_path.glob("outputs/*/records.jsonl")]:
                try:
                    text = path.read_text()
                except FileNotFoundError:
                    continue
                try:
                    [json.loads(line) for line in text.splitlines()] if path.suffix == ".jsonl" else json.loads(text)
                    reads[0] += 1
                except ValueError:
                    bad.append((path, text))

    reader = threading.Thread(target=read_everything)
    reader.start()
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        done.set()
        reader.join()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    assert not bad and reads[0] > 10

    firsts = [read_records(tmp_path / "outputs" / s / "records.jsonl")[0] for s in STRATEGIES]
    assert sorted(r["dense_cached"] for r in firsts) == [False, True, True]
    assert len({r["dense_hash"] for r in firsts}) == 1 and len({r["test_acc"] for r in firsts}) == 1
    assert sum("training the dense model" in out for out in outs) == 1
    entries = [p for p in (tmp_path / "outputs/cache/dense").iterdir() if not p.name.endswith(".lock")]
    assert [p.name for p in entries] == [firsts[0]["dense_hash"]]


def test_two_fused_sweeps_that_share_dense_runs_at_once_train_each_once_without_a_deadlock(tmp_path: Path) -> None:
    """Sweep A (finetune, seeds 0 and 1) and sweep B (lr_rewind, seeds 1 and 2) each train their
    seeds' dense runs as one group (job/dense_group.py), taking the runs' locks in sorted order:
    seed 1's run is in both groups. Both finish, and every run is trained once."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(tmp_path)}
    sweeps = {"a": ["retrain=finetune", "seed=0,1"], "b": ["retrain=lr_rewind", "seed=1,2"]}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "prune_exp", "-m", *ARGS, *args, f"hydra.sweep.dir=outputs/{name}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, args in sweeps.items()
    }
    outs = {name: p.communicate(timeout=300)[0] for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, outs[name][-3000:]
    firsts = [read_records(f)[0] for f in sorted(tmp_path.glob("outputs/[ab]/*/records.jsonl"))]
    assert len(firsts) == 4
    by_run: dict[str, list[bool]] = {}
    for r in firsts:
        by_run.setdefault(r["dense_hash"], []).append(r["dense_cached"])
    assert len(by_run) == 3 and all(cached.count(False) == 1 for cached in by_run.values()), by_run
    entries = [p for p in (tmp_path / "outputs/cache/dense").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert sorted(p.name for p in entries) == sorted(by_run)
