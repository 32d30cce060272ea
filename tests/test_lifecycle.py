"""Faults that need real processes: signals, a second writer in a job dir, a full disk, a sweep
with a failing job, the parent of local workers dying, and kills at the points where a job
writes its last files (between the records and the mask; during the report). Each checks the
exit status, the job's status.json and that the same command then finishes the work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import RESUMABLE_JOB, run_cli, tiny_disk
from safetensors.torch import load_file

from prune_exp.store.jobdir import LOCK_FILE, holder
from prune_exp.store.records import VOLATILE, read_records

pytestmark = pytest.mark.slow

JOB = [*RESUMABLE_JOB, "hydra.run.dir=outputs/job"]
QUICK = ["debug=fast", "dense.epochs=2", "retrain.budget=1", "trainer.checkpoint_every_s=0"]


def start(root: Path, args: list[str], code: str | None = None) -> subprocess.Popen:
    """``prune-exp ARGS`` in ``root``; with ``code``, that Python runs first (to plant a kill)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(root)}
    head = ["-c", f"{code}\nfrom prune_exp.app.run import cli\ncli()"] if code else ["-m", "prune_exp"]
    return subprocess.Popen(
        [sys.executable, *head, *args], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"ended before {what}:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def status(job: Path) -> dict:
    return json.loads((job / "status.json").read_text())


def in_dense_training(root: Path) -> Callable[[], bool]:
    return lambda: any((root / "outputs/cache/dense").glob(".*.partial/resume.ckpt"))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_exits_with_its_code_and_the_same_command_resumes(tmp_path: Path, sig: int, code: int) -> None:
    proc = start(tmp_path, JOB)
    wait_for(proc, in_dense_training(tmp_path), "dense training")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    last = err.strip().splitlines()[-1]
    name = signal.Signals(sig).name
    job = tmp_path / "outputs" / "job"
    hint = "the same command with hydra.run.dir=outputs/job resumes it"
    assert last == f"prune-exp: interrupted (stopped by {name}); {hint}"
    assert status(job)["state"] == "interrupted" and name in status(job)["error"]
    assert holder(job) is None
    if sig == signal.SIGTERM:  # (once is enough) the same command picks up where it stopped
        res = run_cli(JOB, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "resuming the dense model" in res.stdout + res.stderr and status(job)["state"] == "done"


def test_a_second_writer_is_refused_at_once_and_the_first_finishes_intact(tmp_path: Path) -> None:
    first = start(tmp_path, JOB)
    job = tmp_path / "outputs" / "job"
    wait_for(first, lambda: (job / "status.json").exists() and holder(job) is not None, "the job's start")
    started = time.monotonic()
    second = run_cli(JOB, cwd=tmp_path)
    assert time.monotonic() - started < 30  # at once: not after the first one ends
    assert second.returncode == 1
    assert f"is in use by another prune-exp process (host {os.uname().nodename}, pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert status(job)["state"] == "done"
    assert [r["round"] for r in read_records(job / "records.jsonl")] == [0, 1, 2]
    log = (job / "retrain_log" / "metrics.csv").read_text().splitlines()
    assert log[0].startswith("epoch,") and len(log) == 1 + 4  # one row per retraining epoch, one writer
    assert (job / LOCK_FILE).read_text() == ""  # released: it names no holder


def test_a_full_disk_ends_the_job_failed_with_the_reason(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", "160k") as disk:
        res = run_cli([*QUICK, "model.hidden=[200,200]", f"paths.root_dir={disk}", "hydra.run.dir=outputs/job"], disk)
        assert res.returncode == 1, res.stderr[-3000:]
        st = status(disk / "outputs" / "job")
        assert st["state"] == "failed" and "No space left on device" in st["error"], st
        # one line that says so and where (safetensors' error names no file: the job's filesystems)
        assert "Traceback" not in res.stderr and "Logging error" not in res.stderr, res.stderr[-3000:]
        last = res.stderr.strip().splitlines()[-1]
        where = rf"on {disk} \(\d+(\.\d)? (bytes|KiB) free\), which holds paths\.output_dir={disk}/outputs/job, "
        assert re.fullmatch(
            rf"prune-exp: the disk is full \(No space left on device\): {where}paths\.cache_dir={disk}/outputs/cache; "
            r"free space there, then run the same command again",
            last,
        ), last


BOOM = '''
import torch
from torch import nn


class Boom(nn.Module):
    """An MLP that fails when it trains with fail=true: a job that breaks after the preflight."""

    def __init__(self, input_shape, num_classes, fail: bool = False):
        super().__init__()
        self.fail = fail
        self.classifier = nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)

    def forward(self, x):
        if self.training and self.fail:
            raise RuntimeError("boom: this model cannot train")
        return self.classifier(x.flatten(1))
'''


def test_a_failed_job_does_not_cost_the_sweep_its_other_jobs_or_its_report(tmp_path: Path) -> None:
    (tmp_path / "plugin" / "conf" / "model").mkdir(parents=True)
    (tmp_path / "plugin" / "boom.py").write_text(BOOM)
    (tmp_path / "plugin" / "conf" / "model" / "boom.yaml").write_text("_target_: boom.Boom\nfail: false\n")
    sweep = tmp_path / "sweep"
    args = ["-m", *QUICK, "model=boom", "model.fail=true,false", f"hydra.sweep.dir={sweep}"]
    args += ["--config-dir", str(tmp_path / "plugin" / "conf")]  # the user's own config groups
    res = run_cli(args, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "plugin")})
    assert res.returncode == 1, res.stderr[-3000:]
    assert status(sweep / "0")["state"] == "failed" and "boom: this model cannot train" in status(sweep / "0")["error"]
    assert status(sweep / "1")["state"] == "done"  # the sweep went on after the failure
    summary = (sweep / "summary.md").read_text()
    assert "2 jobs: 1 failed, 1 done." in summary and "boom: this model cannot train" in summary
    assert "prune-exp: 1 of 2 jobs of the sweep did not finish; see the Jobs table of" in res.stderr


def test_local_workers_end_when_the_command_that_started_them_dies(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *RESUMABLE_JOB, "seed=0,1", "hydra/launcher=local", "hydra.launcher.n_jobs=2"]
    parent = start(tmp_path, [*args, f"hydra.sweep.dir={sweep}"])
    jobs = [sweep / "0", sweep / "1"]
    wait_for(parent, lambda: all(holder(j) is not None for j in jobs), "both workers' jobs")
    workers = [int(holder(j)["pid"]) for j in jobs]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived the command that started it"
        time.sleep(0.2)
    assert [status(j)["state"] for j in jobs] == ["interrupted", "interrupted"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def assert_modes_follow_umask(outputs: Path, files: int, dirs: int) -> None:
    """Every file a job wrote (job dir and cache) has the umask's mode: a shared cluster cache
    needs group-readable (here group-writable) files, never safetensors' 0600."""
    paths = list(outputs.rglob("*"))
    assert len([p for p in paths if p.suffix == ".safetensors"]) >= 5  # the cache's epochs, mask, weights, CSR
    modes = {p.relative_to(outputs).as_posix(): oct(p.stat().st_mode & 0o777) for p in paths}
    assert modes == {k: oct(dirs if (outputs / k).is_dir() else files) for k in modes}


def _rows(job: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_records(job / "records.jsonl")]


def test_a_kill_between_the_records_and_the_mask_resumes_to_the_same_files(tmp_path: Path) -> None:
    """(The uninterrupted reference runs with umask 002: its files must be 0664, dirs 0775.)"""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    ref.mkdir()
    killed.mkdir()
    args = [*QUICK, "hydra.run.dir=outputs/job"]
    reference = run_cli(args, cwd=ref, umask=0o002)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert_modes_follow_umask(ref / "outputs", files=0o664, dirs=0o775)
    plant = "import os, prune_exp.pruning.mask as m\nm.Mask.save = lambda *a, **k: os._exit(137)"
    proc = start(killed, args, code=plant)
    proc.communicate(timeout=300)
    job = killed / "outputs" / "job"
    assert proc.returncode == 137 and not (job / "mask.safetensors").exists()
    assert status(job)["state"] == "running" and holder(job) is None  # killed: no live writer
    res = run_cli(args, cwd=killed)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _rows(job) == _rows(ref / "outputs" / "job")
    for name in ("mask.safetensors", "weights.safetensors"):
        a, b = load_file(job / name), load_file(ref / "outputs" / "job" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_a_kill_during_the_report_leaves_no_half_file_and_the_same_command_finishes_it(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *QUICK, "retrain=finetune,lr_rewind", f"hydra.sweep.dir={sweep}"]
    plant = "import os, prune_exp.report.plots as p\np.accuracy_vs_compression = lambda *a, **k: os._exit(137)"
    proc = start(tmp_path, args, code=plant)
    proc.communicate(timeout=300)
    assert proc.returncode == 137
    assert not (sweep / "summary.md").exists() and not list(sweep.glob(".*.tmp"))
    pd = pytest.importorskip("pandas")
    assert len(pd.read_csv(sweep / "results.csv")) == 4  # written whole before the kill: 2 jobs x 2 rows
    res = run_cli(args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (res.stdout + res.stderr).count("job already done") == 2
    assert "2 jobs: 2 done." in (sweep / "summary.md").read_text()
