"""Start-up: wall time from the command to the first training step, and of the commands that
train nothing (``--help``, ``--cfg job``, the report), which must not import torch.

Every command runs in a fresh Python process (as a user runs it), ``--reps`` times; the
script prints the median wall time of each. For "first training step" the process is the
real ``prune-exp`` with one change: ``PruneModule.on_train_batch_start`` is wrapped to write
the wall clock to a file and exit at its first call, so the time measured is spawn ->
config composition -> preflight -> imports -> data -> model -> Trainer -> first step.

- fresh: an empty cache, so the first step is the dense stage's;
- dense cached: the dense run is in the cache (run once before), so the first step is the
  retraining's (the dense weights, the rewind point and the pruning come first).

    uv run python scripts/bench_startup.py --reps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "lightning", "torchmetrics", "torchvision", "torch_pruning")

# Runs `prune_exp.app.run.main` with argv, then reports which heavy modules got imported.
IMPORTS_PROBE = """
import sys
sys.argv = ["prune-exp", *sys.argv[1:]]
try:
    from {module} import main
    main({call})
except SystemExit:
    pass
print("HEAVY", *sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""

# The real job, stopped at its first optimizer step.
FIRST_STEP = """
import os, sys, time
from prune_exp.lit import module

def first_step(self, batch, batch_idx):
    with open(os.environ["FIRST_STEP_FILE"], "w") as f:
        f.write(repr(time.time()))
    os._exit(0)

module.PruneModule.on_train_batch_start = first_step
sys.argv = ["prune-exp", *sys.argv[1:]]
from prune_exp.app.run import main
main()
"""


def wall(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"{argv} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return elapsed, p.stderr


def heavy_imports(stderr: str) -> str:
    line = next((ln for ln in stderr.splitlines() if ln.startswith("HEAVY")), "HEAVY ?")
    return ", ".join(line.split()[1:]) or "none"


def first_step(args: list[str], env: dict[str, str], tmp: Path) -> float:
    marker = tmp / "first_step"
    marker.unlink(missing_ok=True)
    start = time.time()
    p = subprocess.run(
        [sys.executable, "-c", FIRST_STEP, *args],
        cwd=ROOT,
        env={**env, "FIRST_STEP_FILE": str(marker)},
        capture_output=True,
        text=True,
    )
    if not marker.exists():
        raise SystemExit(f"no training step was reached ({p.returncode}):\n{p.stderr[-2000:]}")
    return float(marker.read_text()) - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument(
        "--job",
        nargs="*",
        default=["dense.epochs=2", "optim/schedule=constant", "retrain.budget=1", "prune.schedule=one_shot"],
        help="overrides of the timed job (default: the default config, shortened)",
    )
    a = ap.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(ROOT)}
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    job = [*a.job, f"paths.cache_dir={tmp / 'cache'}", f"hydra.run.dir={tmp / 'run'}"]

    def probe(module: str, call: str, *argv: str) -> list[str]:
        return [py, "-c", IMPORTS_PROBE.format(module=module, call=call, heavy=HEAVY), *argv]

    commands = {
        "python -c pass (the interpreter alone)": [py, "-c", "pass"],
        "python -c 'import lightning.pytorch' (imports + teardown)": [py, "-c", "import lightning.pytorch"],
        "prune-exp --help": probe("prune_exp.app.run", "", "--help"),
        "prune-exp --cfg job": probe("prune_exp.app.run", "", "--cfg", "job"),
        "prune-exp experiment=compare --cfg job": probe("prune_exp.app.run", "", "experiment=compare", "--cfg", "job"),
        "prune-exp-report --help": probe("prune_exp.report.cli", "['--help']"),
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    imported: dict[str, str] = {}
    fresh: list[float] = []
    cached: list[float] = []
    # The dense run, once, so that "dense cached" finds it (a complete job; nothing timed).
    warm = [py, "-m", "prune_exp", *job[:-1], f"hydra.run.dir={tmp / 'warm'}"]
    subprocess.run(warm, cwd=ROOT, env=env, check=True, capture_output=True)
    for rep in range(a.reps + 1):  # the first round warms the OS file cache and is dropped
        for name, argv in commands.items():
            t, err = wall(argv, env)
            if argv[1] == "-c" and "HEAVY" in argv[2]:
                imported[name] = heavy_imports(err)
            if rep:
                times[name].append(t)
        empty_cache = [f"paths.cache_dir={tmp / f'fresh{rep}'}", f"hydra.run.dir={tmp / f'f{rep}'}"]
        t_fresh = first_step([*job[:-2], *empty_cache], env, tmp)
        t_cached = first_step([*job[:-1], f"hydra.run.dir={tmp / f'c{rep}'}"], env, tmp)
        if rep:
            fresh.append(t_fresh)
            cached.append(t_cached)

    print(f"{a.reps} reps, median wall time; python {sys.version.split()[0]}; job: prune-exp {' '.join(a.job)}")
    print()
    print("| command | wall time | heavy modules imported |")
    print("|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} s | {imported.get(name, '')} |")
    print(f"| prune-exp → first training step, fresh (dense stage) | {statistics.median(fresh):.2f} s | |")
    print(f"| prune-exp → first training step, dense cached (retraining) | {statistics.median(cached):.2f} s | |")


if __name__ == "__main__":
    main()
