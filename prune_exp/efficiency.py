"""Efficiency of a (masked) model: FLOPs, parameter bytes, measured latency and throughput.

FLOPs come from ``torch.utils.flop_counter`` on one example (convolutions and matmuls, 2
FLOPs per multiply-add, as the counter reports them). The effective FLOPs of a masked model
count only the multiply-adds of its non-zero weights (every prunable layer's FLOPs times its
weight density), which is what sparse kernels could skip: exact for unstructured and N:M
sparsity, an upper bound for channel pruning (a pruned channel also silences the next
layer's inputs; the compacted model gives the exact figure). Latency and throughput are
measured on the run's device, median of repeated timed runs after a warm-up: for a masked
model on dense kernels they are the dense model's, which is the point of reporting both.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prune_exp.pruning.mask import Mask


@dataclass(frozen=True)
class FlopProfile:
    """Forward FLOPs of one example, in total and per module that owns a prunable weight."""

    total: int
    per_module: dict[str, int]  # module name -> FLOPs of its own convolution / matmul


@torch.no_grad()
def flop_profile(model: nn.Module, input_shape: Sequence[int]) -> FlopProfile:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    root = type(model).__name__
    counts = counter.get_flop_counts()
    per_module = {}
    for name, module in model.named_modules():
        key = f"{root}.{name}"
        if name and key in counts and not any(True for _ in module.children()):  # a leaf: its own op's count
            per_module[name] = int(sum(counts[key].values()))
    return FlopProfile(int(counter.get_total_flops()), per_module)


def effective_flops(profile: FlopProfile, mask: Mask) -> int:
    """FLOPs of the multiply-adds whose weight is not zero."""
    saved = 0.0
    for name, flops in profile.per_module.items():
        keep = mask.get(f"{name}.weight")
        if keep is not None:
            saved += flops * (1.0 - float(keep.float().mean()))
    return round(profile.total - saved)


def param_bytes(model: nn.Module, mask: Mask | None = None) -> tuple[int, int]:
    """(all parameters, non-zero parameters) in bytes, at the parameters' own dtype."""
    dense = nonzero = 0
    for name, p in model.named_parameters():
        dense += p.numel() * p.element_size()
        keep = mask.get(name) if mask is not None else None
        nonzero += (int(keep.sum()) if keep is not None else p.numel()) * p.element_size()
    return dense, nonzero


@torch.no_grad()
def measure_speed(
    model: nn.Module, input_shape: Sequence[int], *, batch: int, warmup: int, reps: int
) -> tuple[float, float]:
    """(latency in ms at batch 1, throughput in examples/s at ``batch``): medians of ``reps``
    timed forward passes after ``warmup`` untimed ones, in eval mode on the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    def median_seconds(x: torch.Tensor) -> float:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(reps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    try:
        latency = median_seconds(torch.ones(1, *input_shape, device=device))  # no RNG draws: no side effects
        per_batch = median_seconds(torch.ones(batch, *input_shape, device=device))
    finally:
        model.train(was_training)
    return latency * 1e3, batch / per_batch
