"""Fused arms' training steps vs the same arms one after another, side by side in one run.

For each model and N, one repetition times ``--steps`` steps of N arms fused (StackedNets:
one vmapped forward and backward, one StackedSGD step with a LR per arm, the stacked mask
enforced by MaskEnforcer) and then ``--steps`` steps of each of the N arms alone (its own
network, torch.optim.SGD, its own MaskEnforcer); the same batches, masks (90% global
unstructured sparsity, per arm) and SGD (momentum 0.9, weight decay 5e-4). It prints the
median over ``--reps`` repetitions of arm-steps per second and the ratio fused / alone.
Neither side includes Lightning's per-step cost (~0.4 ms here, docs/benchmarks.md), which a
fused group pays once per step of all N arms, and N jobs once per step each.

Peak memory: each (model, N, side) also runs once in a fresh process that builds that side
only and reports its peak resident set (CPU: torch's own ~0.8 GiB included) or its peak
allocated CUDA memory (GPU).

    uv run python scripts/bench_fused.py                                 # CPU: cnn1d, lenet300, resnet20
    uv run python scripts/bench_fused.py --sweep --reps 3                # the main job, default (fused) vs basic
    git worktree add /tmp/main-7cb5c8d 7cb5c8d                           # ... and vs an older commit's basic:
    uv run python scripts/bench_fused.py --sweep --reps 3 --against /tmp/main-7cb5c8d
    uv run python scripts/bench_fused.py --sweep --reps 3 prune.sparsity=0.59   # ... 4 rounds instead of 11
    uv run python scripts/bench_fused.py --device cuda --models resnet20 --arms 8 --bf16 --channels-last
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prune_exp.config import SGDConfig
from prune_exp.fused.optim import build_stacked_optimizer
from prune_exp.fused.stack import StackedNets
from prune_exp.lit.callbacks import MaskEnforcer
from prune_exp.lit.module import build_optimizer
from prune_exp.models.cnn1d import CNN1D
from prune_exp.models.mlp import MLP
from prune_exp.models.resnet_cifar import ResNetCIFAR
from prune_exp.pruning.mask import Mask

MODELS = {  # name -> (network, input shape, batch size)
    "cnn1d": (lambda: CNN1D((1, 40), 10), (1, 40), 128),
    "lenet300": (lambda: MLP((1, 28, 28), 10, hidden=[300, 100]), (1, 28, 28), 60),
    "resnet20": (lambda: ResNetCIFAR((3, 32, 32), 10, depth=20), (3, 32, 32), 128),
}
SGD = SGDConfig(lr=0.1, momentum=0.9, weight_decay=5e-4)


def _mask(net: nn.Module, seed: int) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=g) > 0.9 for n, p in net.named_parameters() if p.dim() > 1})


class Setup:
    """N arms of ``model``, fused and alone, with their masks, optimizers and batches."""

    def __init__(
        self, model: str, arms: int, device: str, bf16: bool, channels_last: bool, sides=("fused", "alone")
    ) -> None:
        make, shape, batch = MODELS[model]
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last and len(shape) == 3 else torch.contiguous_format
        nets = [make().to(device, memory_format=fmt) for _ in range(arms)]
        self.masks = [_mask(net, i) for i, net in enumerate(nets)]
        if "fused" in sides:
            self.stacked = StackedNets([copy.deepcopy(n) for n in nets] if "alone" in sides else nets).to(device)
            self.fused_opt = build_stacked_optimizer(SGD, self.stacked.holder.parameters(), arms)
            self.fused_opt.set_lr(torch.full((arms,), SGD.lr, device=device))
            stacked_mask = Mask({n: torch.stack([m[n] for m in self.masks]).to(device) for n in self.masks[0]})
            self.enforcer = MaskEnforcer(self.stacked.holder)
            self.enforcer.set_mask(stacked_mask)
            self.enforcer.attach([self.fused_opt])
        self.alone, self.opts, self.enforcers = (nets if "alone" in sides else []), [], []
        for net, mask in zip(self.alone, self.masks, strict=False):
            self.opts.append(build_optimizer(SGD, net.parameters()))
            self.enforcers.append(MaskEnforcer(net))
            self.enforcers[-1].set_mask(Mask({k: v.to(device) for k, v in mask.items()}))
            self.enforcers[-1].attach([self.opts[-1]])
        self.x = torch.randn(arms, batch, *shape, device=device)
        self.y = torch.randint(0, 10, (arms, batch), device=device)
        self.autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()
        self.arms, self.device = arms, device

    def fused_step(self) -> None:
        self.fused_opt.zero_grad()
        with self.autocast:
            out = self.stacked(self.x).float()
        F.cross_entropy(out.flatten(0, 1), self.y.flatten(), reduction="none").view(self.arms, -1).mean(
            1
        ).sum().backward()
        self.fused_opt.step()

    def alone_steps(self) -> None:
        for i, (net, opt) in enumerate(zip(self.alone, self.opts, strict=True)):
            opt.zero_grad()
            with self.autocast:
                out = net(self.x[i]).float()
            F.cross_entropy(out, self.y[i]).backward()
            opt.step()

    def time(self, step, steps: int) -> float:
        for _ in range(2):
            step()
        self.sync()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        self.sync()
        return time.perf_counter() - start

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def peak_memory(args: argparse.Namespace, model: str, arms: int, side: str) -> float:
    """MiB: a fresh process's peak, for one side alone."""
    cmd = [sys.executable, __file__, "--child", side, "--models", model, "--arms", str(arms), "--steps", "3"]
    cmd += (
        ["--device", args.device]
        + (["--bf16"] if args.bf16 else [])
        + (["--channels-last"] if args.channels_last else [])
    )
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def child(args: argparse.Namespace) -> None:
    s = Setup(args.models[0], args.arms[0], args.device, args.bf16, args.channels_last, sides=(args.child,))
    s.time(s.fused_step if args.child == "fused" else s.alone_steps, args.steps)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # VmHWM: this process image's own peak (ru_maxrss would start from the forking parent's)
        status = Path("/proc/self/status").read_text()
        peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    print(json.dumps({"peak_mib": peak}))


def sweep(args: argparse.Namespace) -> None:
    """The real command, ``prune-exp -m experiment=compare`` (plus ``args.overrides``), in a fresh
    process with an empty cache, from the shell command to the report: this commit's default
    launcher (fused), its basic launcher and, with ``--against DIR``, the basic launcher of the
    checkout in DIR (``git worktree add DIR 7cb5c8d``), in turn, ``--reps`` times."""
    here = str(Path(__file__).resolve().parents[1])
    sides = {"default": (here, []), "basic": (here, ["hydra/launcher=basic"])}
    if args.against:
        sides[f"basic@{Path(args.against).name}"] = (str(Path(args.against).resolve()), ["hydra/launcher=basic"])
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.reps):
        for name, (code, launcher) in sides.items():
            with tempfile.TemporaryDirectory() as root:
                cmd = [sys.executable, "-m", "prune_exp", "-m", "experiment=compare", *args.overrides, *launcher]
                env = {**os.environ, "PRUNE_EXP_ROOT": root, "PYTHONPATH": code}
                start = time.perf_counter()
                subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
                print(f"{name}: {times[name][-1]:.1f} s", flush=True)
                if args.keep:  # the sweep's tidy results, to compare the launchers' outcomes
                    (results,) = Path(root).glob("outputs/*/multiruns/*/results.csv")
                    kept = Path(args.keep) / f"{name.replace('@', '-')}-{len(times[name])}.csv"
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    kept.write_bytes(results.read_bytes())
    medians = {name: statistics.median(t) for name, t in times.items()}
    against = [n for n in medians if n.startswith("basic")]
    print(f"| command | {' | '.join(medians)} | " + " | ".join(f"default / {n}" for n in against) + " |")
    ratios = [medians["default"] / medians[n] for n in against]
    cells = [f"{m:.1f} s" for m in medians.values()] + [f"{r:.2f}" for r in ratios]
    print(f"| main job {' '.join(args.overrides)} | " + " | ".join(cells) + " |")
    if args.keep:
        outcome_difference(Path(args.keep), list(sides))


def outcome_difference(keep: Path, sides: list[str]) -> None:
    """How far the launchers' outcomes are apart: every (strategy, seed, round) cell's test
    accuracy in the default launcher's runs against the other sides', next to how far the same
    side's repetitions are apart and the spread between seeds (all in percentage points)."""
    import pandas as pd

    def cells(name: str) -> list[pd.Series]:
        frames = [pd.read_csv(f) for f in sorted(keep.glob(f"{name.replace('@', '-')}-*.csv"))]
        return [f.set_index(["strategy", "seed", "round"])["test_acc"].sort_index() * 100 for f in frames]

    default = cells("default")
    spread = default[0].groupby(level=["strategy", "round"]).std().median()
    print(f"\ntest acc, pp: the seeds' spread (median over cells of the std over seeds): {spread:.2f}")
    for name in sides:
        other = cells(name)
        if name == "default":  # one repetition against another: the same path, the same machine
            pairs = [(a, b) for i, a in enumerate(default) for b in default[i + 1 :]]
        else:
            pairs = [(a, b) for a in default for b in other]
        if not pairs:
            continue
        diffs = pd.concat([(a - b).abs() for a, b in pairs])
        med, mean, top = diffs.median(), diffs.mean(), diffs.max()
        print(f"default vs {name}: |difference| per cell: median {med:.2f}, mean {mean:.2f}, max {top:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--arms", nargs="+", type=int, default=[3, 9, 27])
    p.add_argument("--steps", type=int, default=20, help="steps per arm per repetition")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--sweep", action="store_true", help="time the main job, the default launcher vs the basic one")
    p.add_argument("--against", help="--sweep: also time the basic launcher of the checkout in this dir")
    p.add_argument("--keep", help="--sweep: copy each run's results.csv into this dir")
    p.add_argument("overrides", nargs="*", help="--sweep: overrides of experiment=compare")
    p.add_argument("--child", choices=["fused", "alone"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.sweep:
        return sweep(args)
    print("| model | N | fused arm-steps/s | alone arm-steps/s | fused / alone | peak MiB fused | peak MiB alone |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models:
        for arms in args.arms:
            s = Setup(model, arms, args.device, args.bf16, args.channels_last)
            fused, alone = [], []
            for _ in range(args.reps):  # side by side, in turn
                fused.append(arms * args.steps / s.time(s.fused_step, args.steps))
                alone.append(arms * args.steps / s.time(s.alone_steps, args.steps))
            f, a = statistics.median(fused), statistics.median(alone)
            mem = (
                ("-", "-")
                if args.no_memory
                else tuple(f"{peak_memory(args, model, arms, side):.0f}" for side in ("fused", "alone"))
            )
            print(f"| {model} | {arms} | {f:.1f} | {a:.1f} | {f / a:.2f} | {mem[0]} | {mem[1]} |", flush=True)
            del s


if __name__ == "__main__":
    main()
