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

from prune_exp.config import EfficiencyConfig
from prune_exp.measure.compact import compact
from prune_exp.measure.csr import csr_linear_names, csr_model
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


SPARSE_STRUCTURES = ("unstructured", "nm")  # element-wise masks: the ones a CSR kernel can exploit


@dataclass
class RoundMeter:
    """The cost and speed columns of a job's record rows, for the model at each round.

    Training FLOPs are 3 x forward FLOPs per example (forward + backward) x examples seen, with
    the dense kernels a masked model runs on; the dense stage is counted in every job's total.
    A channel-pruned model is also compacted (physically smaller: exact FLOPs, real speed) and
    the latest round's compacted model is kept for the job's artifacts; the masked linear
    layers of an element-wise mask are timed on a CSR kernel too.

    The masked model itself is timed once per job (at its first row, the dense model): it runs
    the dense kernels, whose speed does not depend on the zeros in them, so every later row
    repeats that measurement. The compacted and CSR models, whose speed does change, are timed
    every round."""

    input_shape: tuple[int, ...]
    examples: int  # training examples per epoch
    dense_epochs: float
    structure: str  # the structure's name
    config: EfficiencyConfig
    profile: FlopProfile | None = None  # the dense forward FLOPs, counted once
    compacted: tuple[nn.Module, list] | None = None  # (channel runs) the latest round's compacted model
    masked_speed: tuple[float, float] | None = None  # (latency ms, throughput) of the masked model, once

    def measure(self, net: nn.Module, mask: Mask, epochs: float, cum_train_flops: int | None, keep: set[str]) -> dict:
        """The columns for ``net`` under ``mask`` after ``epochs`` of retraining; ``cum_train_flops``
        of the rows before (None for the first row); ``keep``: layers never compacted away."""
        if self.profile is None:
            self.profile = flop_profile(net, self.input_shape)
        p, ef = self.profile, self.config
        dense_bytes, nonzero_bytes = param_bytes(net, mask)
        dense_train = round(3 * p.total * self.examples * self.dense_epochs)
        train = round(3 * p.total * self.examples * epochs)  # gradual rows: epochs are steps / steps per epoch
        eff = effective_flops(p, mask)
        out: dict = {
            "flops_dense": p.total,
            "flops_effective": eff,
            "theoretical_speedup": p.total / max(eff, 1),
            "param_bytes_dense": dense_bytes,
            "param_bytes_nonzero": nonzero_bytes,
            "train_flops": train,
            "dense_train_flops": dense_train,
            "cum_train_flops": (dense_train if cum_train_flops is None else cum_train_flops) + train,
        }
        if ef.measure_speed:
            if self.masked_speed is None:
                self.masked_speed = self._speed(net)
            out["latency_ms"], out["throughput"] = self.masked_speed
        if self.structure == "channel":
            self.compacted = compact(net, mask, self.input_shape, skip=keep)
            small = self.compacted[0]
            out["flops_compacted"] = flop_profile(small, self.input_shape).total
            out["params_compacted"] = sum(q.numel() for q in small.parameters())
            if ef.measure_speed:
                out["latency_ms_compacted"], out["throughput_compacted"] = self._speed(small)
        if ef.measure_speed and self.structure in SPARSE_STRUCTURES and csr_linear_names(net, mask):
            # the masked linear layers on a CSR kernel (convolutions stay dense): real sparse speed
            out["latency_ms_csr"], out["throughput_csr"] = self._speed(csr_model(net, mask))
        return out

    def _speed(self, net: nn.Module) -> tuple[float, float]:
        ef = self.config
        return measure_speed(net, self.input_shape, batch=ef.batch, warmup=ef.warmup, reps=ef.reps)
