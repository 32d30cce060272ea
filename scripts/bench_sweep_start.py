"""A big sweep's start: wall time from the shell command to the first job's ``status.json``
saying running (what a user waits for before anything trains), at 10, 100 and 1,000 jobs,
side by side in one run, and with ``--slurm`` from the command to the SLURM submission of the
whole sweep (``squeue`` lists its jobs) on a real one-node cluster (tests/slurm_cluster.py).

Each measurement is a fresh ``prune-exp -m debug=fast retrain=finetune,lr_rewind
seed=range(0,N/2)`` process in an empty root (no cache), stopped (its process group killed)
once the outcome is seen. The sizes take turns within each repetition; the median of
``--reps`` is printed, and the ratio 1,000 / 10 jobs. ``--sweeper basic`` adds Hydra's own
basic sweeper (what prune-exp used before hydra/sweeper=prune_exp) at the sizes given by
``--basic-jobs``, for comparison (it composes every job three times: ~150 s for 1,000).

    uv run python scripts/bench_sweep_start.py --reps 5 --launchers basic fused
    uv run python scripts/bench_sweep_start.py --reps 3 --slurm --launchers slurm fused_slurm
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep_args(jobs: int, launcher: str, sweeper: str) -> list[str]:
    """The sweep of ``jobs`` jobs (its root is added by time_until)."""
    args = ["-m", "debug=fast", "retrain=finetune,lr_rewind", f"seed=range(0,{jobs // 2})"]
    args.append(f"hydra/launcher={launcher}")  # fused is the default; basic is named too
    if "slurm" in launcher:  # slurm, fused_slurm, or Hydra's own submitit_slurm
        args += ["hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
    if sweeper != "prune_exp":
        args.append(f"hydra/sweeper={sweeper}")
    return args


def first_running(root: Path) -> bool:
    """A job of the sweep under ``root`` has written status.json saying running."""
    for status in root.glob("outputs/*/multiruns/*/*/status.json"):
        with contextlib.suppress(OSError, ValueError):
            if json.loads(status.read_text()).get("state") == "running":
                return True
    return False


def submitted(env: dict[str, str]) -> Callable[[Path], bool]:
    """Whether the cluster's queue holds the sweep's jobs."""

    def check(root: Path) -> bool:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], env=env, capture_output=True, text=True)
        return bool(out.stdout.strip())

    return check


def time_until(args: list[str], done: Callable[[Path], bool], env: dict[str, str], limit: float = 900) -> float:
    """Seconds from starting ``prune-exp ARGS`` (in a fresh root) until ``done(root)``; the
    command is then killed with its process group."""
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_start_"))
    cmd = [sys.executable, "-m", "prune_exp", *args, f"paths.root_dir={root}"]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        while not done(root):
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(cmd)} ended ({proc.returncode}) first:\n{proc.stderr.read()[-3000:]}")
            if time.perf_counter() - start > limit:
                raise SystemExit(f"{' '.join(cmd)}: not there after {limit} s")
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def measure(variants: list[tuple[str, list[str]]], done, env, reps: int) -> dict[str, list[float]]:
    """Each variant once per repetition, in turn (side by side), after one warm-up round."""
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for rep in range(reps + 1):
        for name, args in variants:
            t = time_until(args, done, env)
            print(f"  rep {rep}{' (warm-up)' if rep == 0 else ''}: {name}: {t:.2f} s", file=sys.stderr, flush=True)
            if rep:
                times[name].append(t)
            if done is not first_running:  # the cluster's queue emptied for the next one
                subprocess.run(["scancel", "--user", "root"], env=env, check=False)
                while submitted(env)(Path()):
                    time.sleep(0.2)
    return times


def table(times: dict[str, list[float]], what: str) -> None:
    print(f"| sweep | {what}: median s | runs |")
    print("|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {', '.join(f'{t:.2f}' for t in ts)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--jobs", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument(
        "--launchers", nargs="+", default=["basic"], help="basic, fused, local; with --slurm: slurm, fused_slurm"
    )
    p.add_argument("--basic-jobs", type=int, nargs="*", default=[], help="also Hydra's basic sweeper at these sizes")
    p.add_argument("--slurm", action="store_true", help="time the submission on a local one-node SLURM cluster")
    a = p.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    variants = [
        (f"{n} jobs, {launcher}", sweep_args(n, launcher, "prune_exp")) for launcher in a.launchers for n in a.jobs
    ]
    variants += [(f"{n} jobs, basic, hydra/sweeper=basic", sweep_args(n, "basic", "basic")) for n in a.basic_jobs]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {a.reps} reps (median)\n")
    if a.slurm:
        sys.path.insert(0, str(ROOT / "tests"))
        from slurm_cluster import slurm_cluster

        with slurm_cluster() as cluster:
            env = {**env, **cluster.env}
            times = measure(variants, submitted(env), env, a.reps)
        table(times, "command to submission")
    else:
        times = measure(variants, first_running, env, a.reps)
        table(times, "command to the first job running")
    for launcher in a.launchers:
        small, big = f"{min(a.jobs)} jobs, {launcher}", f"{max(a.jobs)} jobs, {launcher}"
        ratio = statistics.median(times[big]) / statistics.median(times[small])
        print(f"\n{launcher}: {max(a.jobs)} / {min(a.jobs)} jobs = {ratio:.2f}")


if __name__ == "__main__":
    main()
