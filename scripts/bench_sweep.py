"""A three-strategy sweep's wall time vs the training it consists of, side by side in one run.

The sweep is the real command, in a fresh process with an empty cache:

    prune-exp -m retrain=finetune,weight_rewind,lr_rewind <job>

It trains the dense model once (the cache shares it) and retrains three times. It is
compared with

- **1 dense + 3 retrains**: the same training in this process, with nothing else: the
  same PruneModule and Trainer settings, T dense epochs, then three times the one-shot
  prune and t retraining epochs with the mask enforced (no Hydra, no preflight, no
  records, checkpoints, FLOP counts, latency measurements or report). Target: sweep <= 1.1x.
- **3 dense trainings**: T dense epochs three times (what a sweep without the shared dense
  run would spend on its dense stages alone).
- **3 separate commands**: `prune-exp retrain=<s> <job>` three times in turn, the first
  with an empty cache (it trains the dense model), the others finding it there.

Imports (torch + Lightning, ~4-5 s here) are paid once by the sweep and by each separate
command, and not at all by the in-process baselines, which are timed after them.

    uv run python scripts/bench_sweep.py --reps 5 --separate            # one-shot, 1 round
    uv run python scripts/bench_sweep.py --reps 5 --schedule iterative  # 4 rounds
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("finetune", "weight_rewind", "lr_rewind")
# The main comparison (experiment=compare: MNIST-1D, its CNN, T=60, t=45, global magnitude
# to 90%), one seed; --schedule picks one-shot pruning (1 round) or iterative (--rate 0.5:
# 4 rounds, 50 / 75 / 87.5 / 90%).
JOB = ["experiment=compare", "seed=0"]


def run(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return time.perf_counter() - start


def in_process(dense_epochs: int, budget: int, retrains: int, sparsities: list[float], data_dir: str) -> float:
    """T dense epochs, then ``retrains`` x (for every sparsity: prune to it + ``budget`` masked epochs)."""
    import torch

    from prune_exp.config import MultiStepScheduleConfig, SGDConfig, TrainerConfig
    from prune_exp.data.mnist1d import MNIST1DDataModule
    from prune_exp.lit.callbacks import MaskEnforcer
    from prune_exp.lit.module import PruneModule
    from prune_exp.lit.trainer import make_trainer
    from prune_exp.models.cnn1d import CNN1D
    from prune_exp.pruning.criteria import Magnitude
    from prune_exp.pruning.pruner import Pruner
    from prune_exp.pruning.structure import Unstructured
    from prune_exp.retrain.schedules import LRPosition, LRSchedule

    warnings.filterwarnings("ignore")
    schedule_cfg = MultiStepScheduleConfig(milestones=[30.0, 45.0])
    optim = SGDConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, schedule=schedule_cfg)
    dm = MNIST1DDataModule(batch_size=128, eval_batch_size=1000, val_fraction=0.1, split_seed=0, data_dir=data_dir)
    start = time.perf_counter()
    dm.setup()
    torch.manual_seed(0)
    net = CNN1D(dm.input_shape, dm.num_classes)
    schedule = LRSchedule(optim.lr, dense_epochs, optim.schedule)

    class Enforced(PruneModule):  # the enforcer attached to the optimizer, as PruneRetrainCycle does
        enforcer: MaskEnforcer | None = None

        def configure_optimizers(self):
            opt = super().configure_optimizers()
            if self.enforcer is not None:
                self.enforcer.attach([opt])
            return opt

    def fit(epochs: int, first_epoch: int, enforcer: MaskEnforcer | None) -> None:
        module = Enforced(net, optim, dm.num_classes)
        module.enforcer = enforcer
        module.lr_position = LRPosition(schedule, first_epoch * dm.steps_per_epoch, 0, dm.steps_per_epoch)
        log_dir = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
        make_trainer(TrainerConfig(), max_epochs=epochs, callbacks=[], log_dir=log_dir, progress_bar=False).fit(
            module, datamodule=dm
        )

    if dense_epochs:
        fit(dense_epochs, 0, None)
    dense_state = {k: v.clone() for k, v in net.state_dict().items()}
    for _ in range(retrains):
        net.load_state_dict(dense_state)
        pruner = Pruner(net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=sparsities)
        mask = pruner.initial_mask()
        for round_ in range(1, len(sparsities) + 1):
            mask = pruner.prune(mask, round_)
            enforcer = MaskEnforcer(net)
            enforcer.set_mask(mask)
            fit(budget, dense_epochs - budget, enforcer)
            enforcer.detach()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dense-epochs", type=int, default=60)
    ap.add_argument("--budget", type=int, default=45)
    ap.add_argument("--schedule", choices=["one_shot", "iterative"], default="one_shot")
    ap.add_argument("--rate", type=float, default=0.5, help="iterative: fraction of the remaining weights per round")
    ap.add_argument("--separate", action="store_true", help="also time three separate prune-exp commands")
    a = ap.parse_args()
    from prune_exp.pruning.pruner import sparsity_schedule

    sparsities = sparsity_schedule(0.9, a.schedule, a.rate)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(ROOT)}
    job = [*JOB, f"dense.epochs={a.dense_epochs}", f"retrain.budget={a.budget}", f"prune.schedule={a.schedule}"]
    job += [f"prune.rate={a.rate}"] if a.schedule == "iterative" else []
    data_dir = str(ROOT / "data")
    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    cli = [sys.executable, "-m", "prune_exp"]

    def sweep(rep: int) -> float:
        d = tmp / f"sweep{rep}"
        return run(
            [*cli, "-m", f"retrain={','.join(STRATEGIES)}", *job, f"paths.cache_dir={d}/cache", f"hydra.sweep.dir={d}"],
            env,
        )

    def separate(rep: int) -> float:
        d = tmp / f"separate{rep}"
        return sum(
            run([*cli, f"retrain={s}", *job, f"paths.cache_dir={d}/cache", f"hydra.run.dir={d}/{s}"], env)
            for s in STRATEGIES
        )

    variants = {
        "sweep (prune-exp -m, 3 strategies)": sweep,
        "1 dense + 3 retrains, in process": lambda rep: in_process(a.dense_epochs, a.budget, 3, sparsities, data_dir),
        "3 dense trainings, in process": lambda rep: 3 * in_process(a.dense_epochs, a.budget, 0, sparsities, data_dir),
    }
    if a.separate:
        variants["3 separate prune-exp commands"] = separate
    in_process(2, 1, 1, sparsities[:1], data_dir)  # warm-up: imports, the MNIST-1D file, first-call costs
    times: dict[str, list[float]] = {k: [] for k in variants}
    for rep in range(a.reps):
        for name, fn in variants.items():
            times[name].append(fn(rep))
            print(f"rep {rep}: {name}: {times[name][-1]:.1f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"job: prune-exp {' '.join(job)} ({len(sparsities)} rounds); {a.reps} reps, median wall time")
    print()
    print("| variant | wall time (median) |")
    print("|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.1f} s |")
    s = med["sweep (prune-exp -m, 3 strategies)"]
    print()
    print("| ratio | value | target |")
    print("|---|---|---|")
    print(f"| sweep / (1 dense + 3 retrains) | {s / med['1 dense + 3 retrains, in process']:.3f} | <= 1.1 |")
    print(f"| sweep / 3 dense trainings | {s / med['3 dense trainings, in process']:.3f} | |")
    if a.separate:
        print(f"| sweep / 3 separate commands | {s / med['3 separate prune-exp commands']:.3f} | |")


if __name__ == "__main__":
    main()
