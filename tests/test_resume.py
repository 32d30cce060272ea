"""Kill a real job with SIGKILL at several points, start it again, and get the records, mask
and weights of an uninterrupted run bit for bit; a finished job started again trains nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import RESUMABLE_JOB
from safetensors.torch import load_file

from prune_exp.store.records import VOLATILE, read_records

pytestmark = pytest.mark.slow

# two jobs at once (the reference and the killed one) on 2 cores: one thread each
ARGS = [*RESUMABLE_JOB, "trainer.num_threads=1", "hydra.run.dir=outputs/job"]


def start(root: Path, args: list[str] = ARGS) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(root)}
    return subprocess.Popen(
        [sys.executable, "-m", "prune_exp", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], delay: float, what: str) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` first holds; fail if it ended first."""
    deadline = time.monotonic() + 240
    while not ready():
        assert proc.poll() is None, f"the job ended before {what}:\n{proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, f"the job ended before it could be killed {what}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def rows_of(root: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_records(root / "outputs/job/records.jsonl")]


def test_a_job_killed_at_several_points_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    ref.mkdir()
    killed.mkdir()
    reference = start(ref)  # the uninterrupted run, side by side with the killed one

    job = killed / "outputs/job"
    dense_ckpt = lambda: any((killed / "outputs/cache/dense").glob(".*.partial/resume.ckpt"))  # noqa: E731
    records = lambda: len(read_records(job / "records.jsonl")) if (job / "records.jsonl").exists() else 0  # noqa: E731

    # 1. mid-epoch in dense training, after its first checkpoint
    kill_when(start(killed), dense_ckpt, 0.25, "dense epoch 2")
    assert [p.suffix for p in (killed / "outputs/cache/dense").iterdir() if not p.name.startswith(".")] == [".lock"]
    # 2. mid-epoch in the first retraining round (its first epoch checkpointed, no round finished)
    proc = start(killed)
    kill_when(proc, lambda: (job / "resume.ckpt").exists(), 0.25, "retraining epoch 2")
    assert records() == 0
    # 3. right after round 1 is recorded (its checkpoint may or may not be written yet)
    kill_when(start(killed), lambda: records() >= 2, 0.0, "the end of round 1")
    # 4. to the end
    out = finish(start(killed))
    assert "resuming the prune-retrain rounds" in out
    finish(reference)

    assert rows_of(killed) == rows_of(ref)
    assert [r["round"] for r in rows_of(killed)] == [0, 1, 2]
    for name in ("mask.safetensors", "weights.safetensors"):
        a, b = load_file(job / name), load_file(ref / "outputs/job" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert not (job / "resume.ckpt").exists()
    assert not list((killed / "outputs/cache/dense").glob(".*.partial"))
    # The per-epoch logs of the dense run and of the rounds are the uninterrupted run's, every
    # epoch once (a resume keeps the epochs up to its checkpoint and logs the rest again).
    logs = lambda root: sorted(root.glob("outputs/**/metrics.csv"))  # noqa: E731
    assert [p.relative_to(killed) for p in logs(killed)] == [p.relative_to(ref) for p in logs(ref)]
    assert len(logs(ref)) == 3  # the dense run's, the job's, and the job cache's copy of the job's
    for a, b in zip(logs(killed), logs(ref), strict=True):
        assert a.read_text() == b.read_text(), a

    # A finished job started again trains nothing and leaves its files as they were.
    # (job.lock is taken and released again: its holder line is written, then cleared)
    before = {p: p.stat().st_mtime_ns for p in job.iterdir() if p.is_file() and p.suffix not in (".log", ".lock")}
    out = finish(start(killed))
    assert "job already done" in out and "dense" not in out
    assert before == {p: p.stat().st_mtime_ns for p in before}


@pytest.mark.parametrize(("every_s", "saved_after"), [(0.0, [0, 1, 2, 3, 4, 5]), (25.0, [2, 5]), (100.0, [])])
def test_checkpoints_are_written_at_the_first_epoch_end_every_s_after_the_last(
    tmp_path: Path, every_s: float, saved_after: list[int]
) -> None:
    """A fake clock advances 10 s per epoch: with every_s=25 the saves fall at the ends of
    epochs 2 and 5 (30 s and 60 s), with 0 at every epoch end, with 100 never."""
    from helpers import tiny_job
    from lightning.pytorch.callbacks import Callback

    from prune_exp.lit.trainer import make_module, make_trainer
    from prune_exp.retrain.schedules import LRPosition
    from prune_exp.store.checkpoint import ResumeCheckpoint, load_checkpoint

    clock = [0.0]
    path = tmp_path / "resume.ckpt"
    seen: list[int | None] = []

    class Tick(Callback):  # runs before ResumeCheckpoint (a Checkpoint runs last)
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            seen.append(load_checkpoint(path)["epoch"] if path.exists() else None)
            clock[0] += 10.0

    job = tiny_job(T=6)
    module = make_module(job, job.build_net())
    module.lr_position = LRPosition(job.schedule, 0, 0, job.steps_per_epoch)
    resume = ResumeCheckpoint(path, every_s, clock=lambda: clock[0])
    trainer = make_trainer(
        job.trainer, max_epochs=6, callbacks=[Tick()], log_dir=tmp_path, progress_bar=False, resume=resume
    )
    trainer.fit(module, datamodule=job.datamodule)
    seen.append(load_checkpoint(path)["epoch"] if path.exists() else None)
    # seen[e + 1] is the epoch of the last checkpoint written by the end of epoch e
    saved = [e for e in range(6) if seen[e + 1] == e]
    assert saved == saved_after
    assert seen[-1] == (saved_after[-1] if saved_after else None)


def test_a_round_with_an_lr_rule_killed_mid_round_resumes_with_its_peak(tmp_path: Path) -> None:
    """ALLR's peak is decided once, at the round's start: a resumed round keeps it (its state
    is in the checkpoint), and the whole job ends as the uninterrupted one, every LR included."""
    args = [a if not a.startswith("retrain=") else "retrain=allr" for a in ARGS]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    ref.mkdir()
    killed.mkdir()
    reference = start(ref, args)
    job = killed / "outputs/job"
    kill_when(start(killed, args), lambda: (job / "resume.ckpt").exists(), 0.25, "retraining epoch 2")
    assert not (job / "records.jsonl").exists() or len(read_records(job / "records.jsonl")) <= 1
    assert "resuming the prune-retrain rounds" in finish(start(killed, args))
    finish(reference)
    rows = rows_of(killed)
    assert rows == rows_of(ref) and [r["round"] for r in rows] == [0, 1, 2]
    assert all(r["lr_rule"] and r["lr_peak"] > 0 for r in rows[1:])
