"""Sweeps through hydra/launcher=slurm on a real one-node SLURM cluster (tests/slurm_cluster.py):
every job runs as a SLURM job and the report is written; a job preempted and signalled for
its time limit is requeued by submitit, resumes from its checkpoint and ends with the records,
mask and weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from helpers import RESUMABLE_JOB
from safetensors.torch import load_file
from slurm_cluster import SlurmCluster, require_slurm, slurm_cluster

from prune_exp.store.records import VOLATILE, read_records

pytestmark = pytest.mark.slow

# Small jobs: one CPU and 1 GB each (the node has the machine's CPUs: 2 jobs at once here).
# timeout_min=15 so that a signal in the first minutes is a preemption for submitit, not a
# timeout (it counts a signal after 80% of the limit, or within 10 minutes of it, as one).
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.timeout_min=15",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]
REPORT = ("summary.md", "results.csv", "accuracy_vs_compression.png")


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    require_slurm()
    with slurm_cluster() as c:
        yield c


class Sweep:
    """``prune-exp -m ARGS hydra/launcher=slurm`` in a subprocess, as a user runs it, with its
    sweep dir at ``root/sweep`` and everything else under ``root`` (PRUNE_EXP_ROOT)."""

    def __init__(self, cluster: SlurmCluster, root: Path, args: list[str], launcher: str = "slurm") -> None:
        self.cluster, self.root, self.dir = cluster, root, root / "sweep"
        launch = [f"hydra/launcher={launcher}", *LAUNCHER[1:]]
        root.mkdir(parents=True, exist_ok=True)
        self.log = root / "sweep.log"
        self._gone_since: float | None = None
        self._polled = 0.0  # when the queue was last looked at
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(root), **cluster.env}
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "prune_exp", "-m", *args, *launch, f"hydra.sweep.dir={self.dir}"],
                cwd=root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def job_ids(self) -> set[str]:
        """The SLURM ids of the sweep's jobs, from submitit's folders (one per job)."""
        folder = self.dir / ".submitit"
        if not folder.is_dir():
            return set()
        return {p.name for p in folder.iterdir() if (p / f"{p.name}_submitted.pkl").exists()}

    def job_log(self, job_id: str) -> str:
        """The job's stdout and stderr over all its runs (SLURM appends on requeue)."""
        folder = self.dir / ".submitit" / job_id
        return "".join(p.read_text(errors="replace") for p in sorted(folder.glob("*_log.*")))

    def diagnostics(self) -> str:
        noise = ("sacct", "accounting storage is disabled")  # submitit polls sacct, absent here
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        tail = "\n".join(line for line in lines if not any(n in line for n in noise))[-3000:]
        jobs = "\n".join(f"--- job {j}\n{self.job_log(j)[-3000:]}" for j in sorted(self.job_ids()))
        status = "\n".join(f"--- {p}\n{p.read_text()}" for p in sorted(self.dir.glob("*/status.json")))
        return f"--- sweep\n{tail}\n{jobs}\n{status}\n{self.cluster.logs(1500)}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _fail(self, message: str) -> None:
        self.stop()
        pytest.fail(f"{message}\n{self.diagnostics()}", pytrace=False)

    def _check(self, what: str, deadline: float) -> None:
        """Fail on a timeout, and fast when the jobs have left the queue unfinished while the
        sweep still waits: without accounting (sacct) submitit cannot tell that a job ended
        without a result, and would wait forever."""
        if time.monotonic() > deadline:
            self._fail(f"timed out waiting for {what}")
        if time.monotonic() - self._polled < 0.5:
            return
        self._polled = time.monotonic()
        queued = self.cluster.run("squeue", "-h", "-o", "%i", check=False).strip()
        states = [json.loads(p.read_text()).get("state") for p in self.dir.glob("*/status.json")]
        if queued or not self.job_ids() or all(s == "done" for s in states):
            self._gone_since = None
        elif self._gone_since is None:
            self._gone_since = time.monotonic()
        elif time.monotonic() - self._gone_since > 20:
            self._fail(f"waiting for {what}: the jobs left the queue unfinished")

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = 180) -> None:
        """Poll ``ready()``; fail if the sweep ends first, or its jobs do, or it takes too long."""
        deadline, self._gone_since = time.monotonic() + timeout, None
        while not ready():
            if self.proc.poll() is not None:
                self._fail(f"the sweep ended before {what}")
            self._check(what, deadline)
            time.sleep(0.05)

    def finish(self, timeout: float = 300) -> str:
        """Wait for the sweep to succeed; its output."""
        deadline, self._gone_since = time.monotonic() + timeout, None
        while self.proc.poll() is None:
            self._check("the sweep to finish", deadline)
            time.sleep(0.1)
        if self.proc.returncode != 0:
            self._fail(f"the sweep failed ({self.proc.returncode})")
        return self.log.read_text(errors="replace")


def test_a_comparison_sweep_runs_every_job_as_a_slurm_job_and_reports(cluster: SlurmCluster, tmp_path: Path) -> None:
    sweep = Sweep(cluster, tmp_path, ["debug=fast", "retrain=finetune,weight_rewind,lr_rewind", "seed=0,1"])
    try:
        sweep.finish()
    finally:
        sweep.stop()

    jobs = sorted((p for p in sweep.dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [p.name for p in jobs] == ["0", "1", "2", "3", "4", "5"]
    ids = {}
    for job in jobs:
        assert json.loads((job / "status.json").read_text())["state"] == "done"
        rows = read_records(job / "records.jsonl")
        assert [r["round"] for r in rows] == [0, 1]
        assert {r["host"] for r in rows} == {socket.gethostname()}
        assert {r["world_size"] for r in rows} == {1}
        (ids[job.name],) = {r["slurm_job_id"] for r in rows}  # one id per job, in every row
    # One job array: sweep job n is array task n, each its own SLURM job, each with a submitit folder.
    assert all(isinstance(i, str) and re.fullmatch(rf"\d+_{n}", i) for n, i in ids.items()), ids
    assert len({i.split("_")[0] for i in ids.values()}) == 1
    assert set(ids.values()) == sweep.job_ids()
    assert len(set(ids.values())) == len(jobs)
    # Each job's pickle names the launcher's, pickled once (slurm_launcher.py): a big sweep is
    # submitted in seconds. (Hydra's launcher pickles itself and Hydra's state into every job's.)
    pickles = sorted(sweep.dir.glob(".submitit/*/*_submitted.pkl"))
    biggest = max(p.stat().st_size for p in pickles)
    assert len(pickles) == len(jobs) and biggest < 4096
    assert (sweep.dir / ".submitit" / "shared" / "launcher.pkl").stat().st_size > 20 * biggest
    # The submitting process waited for the jobs and reported the sweep.
    for name in REPORT:
        assert (sweep.dir / name).stat().st_size > 0, name
    assert len((sweep.dir / "results.csv").read_text().splitlines()) == 1 + 2 * len(jobs)


def test_a_fused_sweep_runs_each_group_as_one_array_task(cluster: SlurmCluster, tmp_path: Path) -> None:
    args = ["debug=fast", "retrain=finetune,lr_rewind,none", "seed=0,1"]
    sweep = Sweep(cluster, tmp_path, args, launcher="fused_slurm")
    try:
        out = sweep.finish()
    finally:
        sweep.stop()
    assert "trains alone: retrain=none does not train" in out
    jobs = sorted((p for p in sweep.dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    tasks, groups = {}, {}
    for job in jobs:
        assert json.loads((job / "status.json").read_text())["state"] == "done"
        rows = read_records(job / "records.jsonl")
        ((tasks[job.name], groups[job.name]),) = {(r["slurm_job_id"], r["fused_group"]) for r in rows}
    strategies = {j.name: read_records(j / "records.jsonl")[-1]["strategy"] for j in jobs}
    trained = [name for name, s in strategies.items() if s != "none"]
    # the four trained jobs: one group, one array task; each job of retrain=none: a task of its own
    assert len({tasks[n] for n in trained}) == 1 and len({groups[n] for n in trained}) == 1
    assert None not in {groups[n] for n in trained}
    alone = [n for n in strategies if n not in trained]
    assert len({tasks[n] for n in alone}) == 2 and {groups[n] for n in alone} == {None}
    assert len({t.split("_")[0] for t in tasks.values()}) == 1  # one job array
    for name in REPORT:
        assert (sweep.dir / name).stat().st_size > 0, name


# two such jobs at once (the reference and the SLURM one) on 2 cores: one thread each
JOB = [*RESUMABLE_JOB, "trainer.num_threads=1"]


def rows_of(job_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_records(job_dir / "records.jsonl")]


def test_a_preempted_and_timed_out_job_is_requeued_and_resumes_to_the_uninterrupted_result(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    ref = tmp_path / "ref"
    ref.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(ref)}
    reference = subprocess.Popen(  # the uninterrupted run, a plain local one, side by side
        [sys.executable, "-m", "prune_exp", *JOB, "hydra.run.dir=outputs/job"],
        cwd=ref,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    root = tmp_path / "slurm"
    sweep = Sweep(cluster, root, JOB)
    job = sweep.dir / "0"
    try:
        sweep.wait_for("the job to be submitted", lambda: bool(sweep.job_ids()))
        (job_id,) = sweep.job_ids()

        # 1. Preempted in the dense stage, after its first epoch checkpoint: SLURM sends SIGTERM,
        # then the job's signal (USR2; submitit's own test helper does the same). They are
        # separate events on a real cluster, so half a second apart here: the job must not
        # stop on the SIGTERM alone (submitit ignores it; it requeues the job on USR2).
        sweep.wait_for(
            "the dense checkpoint", lambda: any((root / "outputs/cache/dense").glob(".*.partial/resume.ckpt"))
        )
        cluster.signal_job(job_id, "SIGTERM")
        time.sleep(0.5)
        cluster.signal_job(job_id, "USR2")

        # 2. Requeued and started again, it resumes the dense run and goes on to retrain; then
        # its time limit is near: SLURM sends USR2 alone (signal_delay_s before the limit).
        # This early in a 15-minute job submitit counts it as a preemption, not a timeout;
        # either way it checkpoints the submission and requeues the job.
        sweep.wait_for("a retraining checkpoint after the requeue", lambda: (job / "resume.ckpt").exists())
        cluster.signal_job(job_id, "USR2")

        sweep.finish()
        out, _ = reference.communicate(timeout=300)
        assert reference.returncode == 0, out[-3000:]
    finally:
        sweep.stop()
        if reference.poll() is None:
            reference.kill()
            reference.communicate()

    log = sweep.job_log(job_id)
    events = lambda what: set(re.findall(rf"^submitit \w+ \(([^)]*)\) - .*{what}", log, re.M))  # noqa: E731
    assert len(events("Starting with JobEnvironment")) == 3, sweep.diagnostics()  # 2 requeues, 3 runs
    assert len(events(f"Requeued job {job_id} ")) == 2, sweep.diagnostics()
    assert len(events("this job is preempted")) == 2, sweep.diagnostics()
    run_log = (job / "run.log").read_text()  # the job's log, appended to by every run
    assert "resuming the dense model" in run_log, run_log
    assert "resuming the prune-retrain rounds" in run_log, run_log
    assert json.loads((job / "status.json").read_text())["state"] == "done"

    rows = read_records(job / "records.jsonl")
    assert {r["slurm_job_id"] for r in rows} == {job_id}
    assert rows_of(job) == rows_of(ref / "outputs/job")
    assert [r["round"] for r in rows] == [0, 1, 2]
    for name in ("mask.safetensors", "weights.safetensors"):
        a, b = load_file(job / name), load_file(ref / "outputs/job" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert not (job / "resume.ckpt").exists()
    for name in REPORT:  # the sweep finished and reported
        assert (sweep.dir / name).exists(), name
