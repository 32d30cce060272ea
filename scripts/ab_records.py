"""A/B check of a change that must not change results: the same sweeps run with an older
commit and with this tree, then every job's records compared in every non-volatile column.

    python scripts/ab_records.py --old <git ref> --out /tmp/ab

The sweeps touch every path a job can take: the six built-in strategies on unstructured,
channel and N:M structures; one-shot and gradual schedules; a regression task; a user's
plug-ins (tests/test_plugins.py's); fused and unfused launchers; dense.weights; and job-cache
hits (a sweep run again into a new dir). It prints each sweep's job and row counts and exits 1
on the first difference. No timing: run it whenever.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

FAST = ["debug=fast", "efficiency.measure_speed=false"]
SWEEPS: dict[str, list[str]] = {
    "strategies": [
        "retrain=finetune,weight_rewind,lr_rewind,lottery,reinit,none",
        "structure=unstructured,channel,nm",
    ],
    "schedules": [
        "prune.schedule=one_shot,gradual",
        "retrain=finetune,lr_rewind",
        "prune.every=4",
        "retrain.budget=2",
        "prune.sparsity=0.6",
    ],
    "regression": [
        "experiment=compare_regression",
        "dense.epochs=3",
        "optim.schedule.milestones=[1,2]",
        "retrain.budget=1",
        "prune.rounds=2",
        "data.max_samples=200",
    ],
    "fused": [
        "hydra/launcher=fused",
        "retrain=finetune,weight_rewind,lr_rewind",
        "seed=0,1",
        "prune.schedule=iterative",
        "prune.rounds=2",
    ],
    "cache_hit": ["retrain=finetune,weight_rewind,lr_rewind,lottery,reinit,none", "structure=channel"],
}


def run(side: Path, code: Path, name: str, args: list[str], env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "prune_exp", "-m", *args, f"hydra.sweep.dir={side / name}"]
    cmd.append(f"paths.cache_dir={side / 'cache'}")
    out = subprocess.run(cmd, cwd=side, env={**env, "PYTHONPATH": f"{code}{os.pathsep}{env.get('PYTHONPATH', '')}"})
    if out.returncode:
        sys.exit(f"{name} failed with {code} (exit {out.returncode})")


def sweeps(side: Path, code: Path) -> None:
    from test_plugins import user_dir

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(side)}
    side.mkdir(parents=True, exist_ok=True)
    for name, args in SWEEPS.items():
        base = FAST if name != "regression" else FAST[1:]  # debug=fast's constant LR has no milestones
        run(side, code, name, [*base, *args], env)
    from prune_exp.store.records import read_records

    dense_hash = read_records(side / "strategies" / "0" / "records.jsonl")[0]["dense_hash"]
    weights = side / "cache" / "dense" / dense_hash / "epoch_0002.safetensors"  # debug=fast's final weights
    run(side, code, "dense_weights", [*FAST, "retrain=finetune,lr_rewind", f"dense.weights={weights}"], env)
    shutil.rmtree(side / "user", ignore_errors=True)
    plug_code, plug_conf = user_dir(side / "user")
    env["PYTHONPATH"] = str(plug_code)
    plugin = ["--config-dir", str(plug_conf), "data=blobs", "model=two_layer", "prune/criterion=squared"]
    plugin += ["structure=input_columns", "task=with_error", "select_metric=error", "retrain=finetune,wr_constant"]
    plugin += ["dense.epochs=2", "optim.schedule.milestones=[1]", "retrain.budget=1", "efficiency.measure_speed=false"]
    run(side, code, "plugin", plugin, env)


def compare(old: Path, new: Path) -> None:
    """Every row of every job the same in every non-volatile column the old code wrote; the
    columns only the new code writes are listed (a change may add columns, never alter one)."""
    from prune_exp.store.columns import VOLATILE
    from prune_exp.store.records import read_records

    skip = {*VOLATILE, "job_dir"}

    def same(row: dict, side: Path, keys) -> dict:  # a side's own dirs are in its overrides
        out = {k: row.get(k) for k in keys if k not in skip}
        out["overrides"] = [o.replace(str(side), "<side>") for o in row.get("overrides", [])]
        return out

    total, added = 0, set()
    for sweep in sorted(p for p in new.iterdir() if p.is_dir() and p.name not in {"cache", "user"}):
        files = sorted(sweep.rglob("records.jsonl"))
        for f in files:
            a, b = read_records(old / f.relative_to(new)), read_records(f)
            if len(a) != len(b):
                sys.exit(f"{f.relative_to(new)}: {len(a)} rows before, {len(b)} now")
            for ra, rb in zip(a, b, strict=True):
                if same(ra, old, ra.keys()) != same(rb, new, ra.keys()):
                    diff = {k for k in ra if k not in skip and ra.get(k) != rb.get(k)}
                    sys.exit(f"{f.relative_to(new)}: round {ra.get('round')}'s records differ in {sorted(diff)}")
                added |= rb.keys() - ra.keys()
            total += len(b)
        print(f"{sweep.name}: {len(files)} jobs, identical")
    print(f"all identical: {total} rows" + (f"; new columns: {', '.join(sorted(added))}" if added else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the git ref to compare this tree with")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compare-only", action="store_true", help="compare the sweeps already in --out")
    a = ap.parse_args()
    worktree = a.out / "old_code"
    if not worktree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), a.old], cwd=ROOT, check=True)
    try:
        if not a.compare_only:
            sweeps(a.out / "old", worktree)
            sweeps(a.out / "new", ROOT)
        compare(a.out / "old", a.out / "new")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)


if __name__ == "__main__":
    main()
