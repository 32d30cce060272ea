"""Inference speed of pruned models, side by side in one run: compacted channel-pruned ResNets
vs dense (and vs their FLOP count), and CSR linear layers vs dense ones.

A. CIFAR ResNet-20 / ResNet-56 (3x32x32, 10 classes), channel-pruned by the real Pruner as
   the Li et al. configs do (conf/experiment/li_resnet56_a.yaml: L1-norm filters of the
   first conv of every residual block, layerwise; ``--all-convs`` prunes every conv but the
   classifier), then compacted with Torch-Pruning as a channel job does at its end. Weights
   are a random init (the magnitude criterion ranks them; accuracy is not the point, and
   the architecture, hence the speed, is the same as after training). Per channel sparsity:
   latency at batch 1 and throughput at ``--batch`` of the dense model, the masked model
   (dense kernels: the dense model's speed) and the compacted model; the measured speedup
   dense / compacted next to the theoretical one, dense FLOPs / compacted FLOPs
   (``flop_profile``: the compacted model's exact FLOPs).
B. CSR vs dense linear layers on CPU (prune_exp/measure/csr.py's ``CSRLinear``: ``addmm`` on a CSR
   weight, int32 indices): one ``--width`` x ``--width`` Linear, and the whole LeNet-300-100
   (784-300-100-10; every linear layer CSR), at 90 / 95 / 98% unstructured (layerwise
   magnitude) sparsity, batch 1 and ``--batch``: dense ms, CSR ms, dense / CSR.

Every timing is ``prune_exp.measure.efficiency.measure_speed`` (what a job records: eval mode, no
grad, median after warm-up); the variants of a row are measured in turn, ``--reps`` times,
and the median is printed, so a ratio compares timings taken side by side.

    uv run python scripts/bench_inference.py                  # both parts, CPU
    uv run python scripts/bench_inference.py --part a --device cuda
"""

from __future__ import annotations

import argparse
import statistics
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from prune_exp.measure.compact import compact
from prune_exp.measure.csr import csr_model
from prune_exp.measure.efficiency import flop_profile, measure_speed
from prune_exp.models.mlp import MLP
from prune_exp.models.resnet_cifar import ResNetCIFAR
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Channel, Structure, Unstructured

CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)


def pruned(net: nn.Module, structure: Structure, sparsity: float, include: list[str]) -> tuple[Mask, set[str]]:
    """Prune ``net`` in place (one layerwise magnitude round, weights masked): (mask, output layers)."""
    pruner = Pruner(
        net, criterion=Magnitude(), structure=structure, scope="layerwise", sparsities=[sparsity], include=include
    )
    mask = pruner.prune(pruner.initial_mask(), 1)
    mask.apply_(dict(net.named_parameters()))
    return mask, set(pruner.graph.output_layers)


def side_by_side(
    models: dict[str, nn.Module], shape: tuple[int, ...], batch: int, reps: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """name -> (median ms at batch 1, median ms at ``batch``), the models timed in turn ``reps`` times."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
    for _ in range(reps):
        for name, model in models.items():
            latency, throughput = measure_speed(model, shape, batch=batch, warmup=warmup, reps=3)
            times[name].append((latency, batch / throughput * 1e3))
    return {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# ---------------------------------------------------------------------------------- part A
def part_a(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    scope = "every conv" if args.all_convs else "first conv of every block (Li et al.)"
    print(f"## A. Channel-pruned CIFAR ResNets, compacted ({device}, random init, {scope}, layerwise)")
    print()
    print(
        row(
            [
                "model",
                "channel sparsity",
                "params kept",
                "dense ms (b1)",
                "masked ms (b1)",
                "compacted ms (b1)",
                "speedup b1 (measured)",
                f"dense ms (b{args.batch})",
                f"compacted ms (b{args.batch})",
                f"speedup b{args.batch} (measured)",
                "theoretical (FLOPs)",
            ]
        )
    )
    print("|---" * 11 + "|")
    include = [] if args.all_convs else ["stage*.block*.conv1.weight"]
    for depth in args.depths:

        def build(depth: int = depth) -> nn.Module:
            torch.manual_seed(0)
            return ResNetCIFAR(CIFAR, 10, depth=depth).to(device).eval()

        dense = build()
        dense_flops = flop_profile(dense, CIFAR).total
        dense_params = sum(p.numel() for p in dense.parameters())
        for sparsity in args.channel_sparsities:
            net = build()
            mask, outputs = pruned(net, Channel(), sparsity, include)
            small, _ = compact(net, mask, CIFAR, skip=outputs)
            x = torch.randn(4, *CIFAR, device=device)
            with torch.no_grad():
                diff = (small(x) - net(x)).abs().max().item()
            assert diff <= 1e-3, f"compacted resnet{depth} differs from the masked one by {diff}"
            t = side_by_side(
                {"dense": dense, "masked": net, "compacted": small}, CIFAR, args.batch, args.reps, args.warmup
            )
            small_flops = flop_profile(small, CIFAR).total
            kept = sum(p.numel() for p in small.parameters()) / dense_params
            print(
                row(
                    [
                        f"resnet{depth}",
                        f"{sparsity:.0%}",
                        f"{kept:.1%}",
                        f"{t['dense'][0]:.2f}",
                        f"{t['masked'][0]:.2f}",
                        f"{t['compacted'][0]:.2f}",
                        f"{t['dense'][0] / t['compacted'][0]:.2f}x",
                        f"{t['dense'][1]:.1f}",
                        f"{t['compacted'][1]:.1f}",
                        f"{t['dense'][1] / t['compacted'][1]:.2f}x",
                        f"{dense_flops / small_flops:.2f}x",
                    ]
                )
            )
    print()


# ---------------------------------------------------------------------------------- part B
def part_b(args: argparse.Namespace) -> None:
    print(f"## B. CSR vs dense linear layers (CPU, {torch.get_num_threads()} threads, layerwise magnitude masks)")
    print()
    print(
        row(
            [
                "model",
                "sparsity",
                "dense ms (b1)",
                "CSR ms (b1)",
                "dense / CSR (b1)",
                f"dense ms (b{args.batch})",
                f"CSR ms (b{args.batch})",
                f"dense / CSR (b{args.batch})",
                "max abs diff",
            ]
        )
    )
    print("|---" * 9 + "|")
    w = args.width
    builds: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
        f"Linear {w}x{w}": (lambda: nn.Sequential(OrderedDict(fc=nn.Linear(w, w))), (w,)),
        "LeNet-300-100": (lambda: MLP(MNIST, 10, hidden=[300, 100]), MNIST),
    }
    for name, (build, shape) in builds.items():
        for sparsity in args.sparsities:
            torch.manual_seed(0)
            net = build().eval()
            mask, _ = pruned(net, Unstructured(), sparsity, [])
            sparse = csr_model(net, mask)
            x = torch.randn(args.batch, *shape)
            with torch.no_grad():
                diff = (sparse(x) - net(x)).abs().max().item()
            t = side_by_side({"dense": net, "csr": sparse}, shape, args.batch, args.reps, args.warmup)
            (d1, db), (c1, cb) = t["dense"], t["csr"]
            cells = [f"{d1:.3f}", f"{c1:.3f}", f"{d1 / c1:.2f}x", f"{db:.3f}", f"{cb:.3f}", f"{db / cb:.2f}x"]
            print(row([name, f"{mask.sparsity():.0%}", *cells, f"{diff:.1e}"]))
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["a", "b", "both"], default="both")
    ap.add_argument("--reps", type=int, default=5, help="rounds of side-by-side timings (each a median of 3)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed forward passes before each timing")
    ap.add_argument("--batch", type=int, default=64, help="the throughput batch")
    ap.add_argument("--device", default="cpu", help="part A's device (part B is CPU)")
    ap.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    ap.add_argument("--channel-sparsities", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--all-convs", action="store_true", help="part A: prune every conv, not only blocks' first")
    ap.add_argument("--width", type=int, default=4096, help="part B: the single Linear's in and out features")
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    args = ap.parse_args()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} CPU threads, median of {args.reps} side-by-side rounds")
    print()
    if args.part in ("a", "both"):
        part_a(args)
    if args.part in ("b", "both"):
        part_b(args)


if __name__ == "__main__":
    main()
