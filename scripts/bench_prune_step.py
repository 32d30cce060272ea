"""The global-magnitude prune step on 10M+ weights: time vs size, against a full sort.

prune_exp selects the k lowest scores with ``torch.kthvalue`` (selection, linear time), not a
sort. This times one global unstructured magnitude round of the real Pruner on MLPs of
about 10M, 20M and 40M prunable weights and, on the same scores, ``torch.sort``; it prints
the median of several repetitions, nanoseconds per weight (flat for linear time) and the
ratio to the sort.

    uv run python scripts/bench_prune_step.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Unstructured


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40], help="millions of weights")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.reps}")
    print("| prunable weights | prune step | ns / weight | torch.sort of the scores | prune / sort |")
    print("|---|---|---|---|---|")
    for millions in args.sizes:
        width = int((millions * 1e6 / 4) ** 0.5)  # four width x width layers
        net = nn.Sequential(*[nn.Linear(width, width, bias=False) for _ in range(4)])
        pruner = Pruner(net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=[0.9])
        mask = pruner.initial_mask()
        n = mask.numel(pruner.prunable_names)
        t_prune = timed(lambda p=pruner, m=mask: p.prune(m, 1), args.reps)
        scores = torch.cat([p.detach().abs().reshape(-1) for p in net.parameters()])
        t_sort = timed(lambda s=scores: torch.sort(s), args.reps)
        cells = [f"{n / 1e6:.1f}M", f"{t_prune * 1e3:.0f} ms", f"{t_prune / n * 1e9:.1f}", f"{t_sort * 1e3:.0f} ms"]
        print("| " + " | ".join([*cells, f"{t_prune / t_sort:.2f}"]) + " |")


if __name__ == "__main__":
    main()
