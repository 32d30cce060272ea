"""The dense runs of a fused group train together (job/dense_group.py, fused/dense.py): one
stacked fit for the seeds' dense runs, each published as its own cache entry with its own
epoch files and log, which unfused jobs then use; the same runs as trained alone up to float
rounding; resumed after a kill; two groups that share entries, at once, without a deadlock."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import job_config
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

from prune_exp.app.run import experiment_of
from prune_exp.job.spine import run_job, run_jobs
from prune_exp.store.files import DENSE_META_FILE
from prune_exp.store.records import read_records

FAST = ["debug=fast", "efficiency.measure_speed=false", "dense.epochs=3", "job_cache=false"]


def _exp(root: Path, data: Path, strategy: str, seed: int, extra=()):
    overrides = [*FAST, *extra, f"retrain={strategy}", f"seed={seed}"]
    return experiment_of(job_config(root, data, overrides, job=f"{strategy}-{seed}"))


def _entries(root: Path) -> dict[str, dict]:
    cache = root / "outputs" / "cache" / "dense"
    if not cache.exists():
        return {}
    published = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]  # not .<hash>.partial
    return {p.name: json.loads((p / DENSE_META_FILE).read_text()) for p in published}


def _log(entry: Path) -> list[dict[str, str]]:
    with open(next(entry.rglob("metrics.csv"))) as f:
        return list(csv.DictReader(f))


def test_three_seeds_dense_runs_train_as_one_group_and_publish_three_entries_unfused_jobs_use(
    tmp_path: Path, data_dir: Path
) -> None:
    fused, alone = tmp_path / "fused", tmp_path / "alone"
    run_jobs([_exp(fused, data_dir, "finetune", s) for s in (0, 1, 2)], fused / "group")
    entries = _entries(fused)
    assert len(entries) == 3 and {m["trained_by"] for m in entries.values()} == {"a fused group of 3"}
    rows = {s: read_records(fused / f"finetune-{s}" / "records.jsonl") for s in (0, 1, 2)}
    assert {rows[s][0]["dense_hash"] for s in rows} == set(entries)
    assert all(rows[s][0]["dense_cached"] is False for s in rows)  # each job's group trained its run
    # an unfused weight-rewinding job of seed 1 takes its entry (its epoch T - t file) as it is
    run_job(_exp(fused, data_dir, "weight_rewind", 1))
    wr = read_records(fused / "weight_rewind-1" / "records.jsonl")
    assert wr[0]["dense_hash"] == rows[1][0]["dense_hash"] and wr[0]["dense_cached"] is True
    assert len(_entries(fused)) == 3
    # the same run trained alone: the same epoch files and log, up to float rounding
    run_job(_exp(alone, data_dir, "finetune", 1))
    h = rows[1][0]["dense_hash"]
    alone_entry = _entries(alone)[h]
    assert alone_entry["trained_by"] == "alone" and alone_entry["saved_epochs"] == entries[h]["saved_epochs"]
    for name in entries[h]["files"]:
        a, b = load_file(fused / "outputs/cache/dense" / h / name), load_file(alone / "outputs/cache/dense" / h / name)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), name
    fused_log, alone_log = _log(fused / "outputs/cache/dense" / h), _log(alone / "outputs/cache/dense" / h)
    assert list(fused_log[0]) == list(alone_log[0]) and "val/acc" in fused_log[0]
    assert [(r["epoch"], r["step"]) for r in fused_log] == [(r["epoch"], r["step"]) for r in alone_log]
    for column in set(fused_log[0]) - {"epoch", "step"}:
        assert [float(r[column]) for r in fused_log] == pytest.approx([float(r[column]) for r in alone_log], rel=1e-4)
    for k, v in entries[h]["metrics"].items():
        assert v == pytest.approx(alone_entry["metrics"][k], rel=1e-4), k


class KillAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and trainer.max_epochs == 3:  # the dense fit (3 epochs)
            raise RuntimeError("killed")


def test_a_killed_dense_group_resumes_its_dense_arms(tmp_path: Path, data_dir: Path, monkeypatch) -> None:
    import prune_exp.fused.dense as fused_dense

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    extra = ["trainer.checkpoint_every_s=0"]
    run_jobs([_exp(whole, data_dir, "finetune", s, extra) for s in (0, 1)], whole / "group")
    real = fused_dense.make_trainer
    monkeypatch.setattr(
        fused_dense, "make_trainer", lambda *a, **k: real(*a, **{**k, "callbacks": [*k["callbacks"], KillAt(2)]})
    )
    with pytest.raises(RuntimeError, match="killed"):
        run_jobs([_exp(cut, data_dir, "finetune", s, extra) for s in (0, 1)], cut / "group")
    assert not _entries(cut)  # nothing published
    assert len(list((cut / "group").rglob("resume.ckpt"))) == 1
    monkeypatch.setattr(
        fused_dense, "make_trainer", lambda *a, **k: real(*a, **{**k, "callbacks": [*k["callbacks"], KillAt(1)]})
    )
    run_jobs([_exp(cut, data_dir, "finetune", s, extra) for s in (0, 1)], cut / "group")  # resumed at epoch 2
    assert _entries(cut).keys() == _entries(whole).keys()
    for h, meta in _entries(whole).items():
        assert _entries(cut)[h]["files"] == meta["files"], h  # the same bytes as an uninterrupted group's
        assert _log(cut / "outputs/cache/dense" / h) == _log(whole / "outputs/cache/dense" / h)
