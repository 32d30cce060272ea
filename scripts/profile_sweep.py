"""Where a sweep's time goes outside its arms' training steps: the real command under cProfile.

Runs ``prune-exp -m experiment=compare`` (plus the overrides) in a fresh process with an empty
cache under ``python -m cProfile`` and prints a table of its parts: the start-up (Python and
the imports, the composition), the preflight, the data, the dense runs, the rounds' training
steps, each arm's evaluation at its rounds' start and end, the per-epoch validation, the
records' measurements (FLOPs, speed, CSR), the artifacts and the report. Each part is the
cumulative time of the functions that do it (``PARTS``); "training steps" is the rounds' fit
less the parts nested in it. cProfile slows Python-heavy code more than torch's kernels, so
the shares are approximate; the wall time without the profiler is printed next to them.

    uv run python scripts/profile_sweep.py                       # the main job, default launcher
    uv run python scripts/profile_sweep.py hydra/launcher=basic  # ... one job after another
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# part -> the functions (file suffix, name) whose cumulative time it is; nested parts are
# subtracted from the parts that contain them (NESTED).
PARTS: dict[str, list[tuple[str, str]]] = {
    "preflight (every job composed and checked)": [("app/sweep_preflight.py", "check_sweep")],
    "data (loaded, digested)": [("job/experiment.py", "set_up")],
    "dense runs": [("job/dense_group.py", "train_dense_together"), ("job/dense.py", "dense_stage")],
    "rounds (fit)": [("fused/group.py", "fit_group"), ("job/rounds.py", "fit_rounds")],
    "round start: prune, evaluate": [("lit/rounds.py", "begin_round")],
    "round end: evaluate": [("lit/rounds.py", "finish_round")],
    "records: FLOPs, speed, CSR": [("measure/efficiency.py", "measure")],
    "per-epoch validation": [("fused/evaluate.py", "__call__"), ("lit/module.py", "validation_step")],
    "artifacts (mask, weights, CSR file)": [("job/arm.py", "finish")],
    "report": [("app/hydra_callbacks.py", "on_multirun_end")],
}
NESTED = {  # part -> the parts inside it
    "rounds (fit)": ["round start: prune, evaluate", "round end: evaluate", "per-epoch validation"],
    "round end: evaluate": ["records: FLOPs, speed, CSR"],
}


def cumulative(stats: pstats.Stats, functions: list[tuple[str, str]]) -> float:
    """The summed cumulative seconds of ``functions`` (outermost calls only: pstats' cumtime)."""
    total = 0.0
    for (file, _, name), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if any(file.endswith(suffix) and name == fn for suffix, fn in functions):
            total += cum
    return total


# The command's own main() under cProfile: ``python -m prune_exp`` ends with os._exit (app/run.cli),
# before ``python -m cProfile`` could write its file.
PROFILED = (
    "import cProfile, sys; from prune_exp.app.run import main; sys.argv[0] = 'prune-exp'; cProfile.run('main()', {!r})"
)


def run(overrides: list[str], profile: Path | None) -> float:
    """Wall seconds of the command, in a fresh root; under cProfile into ``profile`` if given."""
    with tempfile.TemporaryDirectory() as root:
        head = ["-c", PROFILED.format(str(profile))] if profile else ["-m", "prune_exp"]
        cmd = [sys.executable, *head, "-m", "experiment=compare", *overrides]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=root, env={**os.environ, "PRUNE_EXP_ROOT": root}, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="overrides of experiment=compare")
    p.add_argument("--wall", action="store_true", help="also time the command without the profiler, first")
    args = p.parse_args()
    wall = run(args.overrides, None) if args.wall else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        profiled = run(args.overrides, Path(tmp) / "sweep.prof")
        stats = pstats.Stats(str(Path(tmp) / "sweep.prof"))
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    parts = {name: cumulative(stats, fns) for name, fns in PARTS.items()}
    own = {name: t - sum(parts[n] for n in NESTED.get(name, [])) for name, t in parts.items()}
    own["start-up, composition, launcher, other"] = total - sum(own.values())
    print(f"command: prune-exp -m experiment=compare {' '.join(args.overrides)}")
    print(f"wall: {wall:.1f} s without the profiler, {profiled:.1f} s with it (profiled: {total:.1f} s)\n")
    print("| part | seconds (profiled) | share |")
    print("|---|---|---|")
    for name, t in own.items():
        label = "rounds: the arms' training steps" if name == "rounds (fit)" else name
        print(f"| {label} | {t:.1f} | {100 * t / total:.0f}% |")


if __name__ == "__main__":
    main()
