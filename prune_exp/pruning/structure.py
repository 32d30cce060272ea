"""Structures: what one prunable *unit* is (a weight, an output channel) and what goes with it."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod

import torch
from torch import fx, nn

log = logging.getLogger(__name__)

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Norms with one affine (weight, bias) pair per channel: zeroing both silences the channel.
NORM_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
)


class Structure(ABC):
    """Maps a weight tensor to units: score them, know which are alive, expand a unit mask."""

    name: str
    # Global scope: divide each layer's unit scores by their mean before comparing layers.
    normalize_globally: bool = False
    # Units every layer keeps whatever the target (1 for channels: a layer with no channel
    # disconnects the network).
    min_kept_units: int = 0

    def skips(self, module_name: str, graph: ModelGraph) -> bool:
        """True if the layer cannot be pruned in this structure (it stays dense)."""
        return False

    @abstractmethod
    def unit_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-weight scores -> 1-D per-unit scores."""

    @abstractmethod
    def unit_alive(self, keep: torch.Tensor) -> torch.Tensor:
        """Weight keep-mask -> 1-D bool, True for units not yet pruned."""

    @abstractmethod
    def unit_size(self, shape: torch.Size) -> int:
        """Number of weights in one unit."""

    @abstractmethod
    def expand(self, unit_keep: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """1-D unit keep-mask -> weight keep-mask of ``shape``."""

    def dependents(self, module_name: str, graph: ModelGraph) -> list[str]:
        """Per-unit parameters that must be zeroed with a unit (bias, following norm)."""
        return []


class Unstructured(Structure):
    """Every weight is its own unit."""

    name = "unstructured"

    def unit_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.reshape(-1)

    def unit_alive(self, keep: torch.Tensor) -> torch.Tensor:
        return keep.reshape(-1)

    def unit_size(self, shape: torch.Size) -> int:
        return 1

    def expand(self, unit_keep: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return unit_keep.reshape(shape)


class Channel(Structure):
    """A unit is a whole output filter (conv) or output row (linear), scored by the sum of its
    weights' scores — the L1 norm for magnitude (Li et al. 2017).

    The layer's bias entry and the affine weight/bias of a norm layer that directly consumes
    its output are masked with the filter, so a pruned channel outputs exactly zero. The
    network's output layer is never channel-pruned: its output units are the classes, and
    every layer keeps at least one channel. In global scope each layer's scores are divided
    by their mean first, so layers compete on relative, not absolute, filter norms.
    """

    name = "channel"
    # Raw L1 norms grow with a filter's fan-in and its init scale, so across layers they would
    # decide by layer shape, not importance (Torch-Pruning's default normalizer does the same).
    normalize_globally = True
    min_kept_units = 1

    def skips(self, module_name: str, graph: ModelGraph) -> bool:
        return module_name in graph.output_layers

    def unit_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.reshape(scores.shape[0], -1).sum(1)

    def unit_alive(self, keep: torch.Tensor) -> torch.Tensor:
        return keep.reshape(keep.shape[0], -1).any(1)

    def unit_size(self, shape: torch.Size) -> int:
        return math.prod(shape[1:])

    def expand(self, unit_keep: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return unit_keep.reshape(-1, *([1] * (len(shape) - 1))).expand(shape).clone()

    def dependents(self, module_name: str, graph: ModelGraph) -> list[str]:
        return graph.channel_dependents.get(module_name, [])


class NM(Unstructured):
    """N:M semi-structured sparsity: in every group of ``m`` consecutive weights along the input
    dimension (a Linear's columns, a conv's input channels at each kernel position), the ``n``
    highest-scoring weights are kept — the pattern sparse tensor cores run (2:4 on NVIDIA
    Ampere and later). The sparsity is 1 - n/m in every pruned layer, so the pruner does not
    rank layers against each other: it selects inside each group. Layers whose input
    dimension is not a multiple of ``m`` (e.g. a first conv on 3 colour channels) stay dense.
    """

    name = "nm"

    def __init__(self, n: int = 2, m: int = 4) -> None:
        if not (isinstance(n, int) and isinstance(m, int) and 1 <= n < m):
            raise ValueError(f"structure n={n}, m={m}: need integers with 1 <= n < m")
        self.n, self.m = n, m

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def skips(self, module_name: str, graph: ModelGraph) -> bool:
        return graph.input_dims.get(module_name, 0) % self.m != 0

    def select(self, scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Keep-mask with the top ``n`` of every ``m`` along the input dim (pruned ones never return)."""
        s = torch.where(keep, scores.float(), torch.full_like(scores, -math.inf, dtype=torch.float32))
        moved = s.movedim(1, -1)  # (out, *kernel, in): groups run along the input dim
        groups = moved.reshape(-1, self.m)
        top = groups.topk(self.n, dim=1).indices
        kept = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, top, True)
        return kept.reshape(moved.shape).movedim(-1, 1) & keep


class ModelGraph:
    """What the structures need to know about a model's wiring, found with torch.fx.

    ``output_layers``: prunable modules whose output is the network's output.
    ``channel_dependents``: module -> its bias and the affine params of norms fed by it.
    If the model cannot be traced, the last prunable module counts as the output layer and no
    norm dependents are known (a warning says so).
    """

    def __init__(self, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        prunable = [n for n, m in modules.items() if isinstance(m, PRUNABLE_TYPES)]
        # size of each prunable weight's input dim (dim 1): in_features or in_channels / groups
        self.input_dims = {n: modules[n].weight.shape[1] for n in prunable}
        self.output_layers: set[str] = set()
        norms: dict[str, list[str]] = {}
        try:
            graph = fx.symbolic_trace(model).graph
        except Exception as e:
            log.warning(
                "torch.fx cannot trace %s (%s): channel pruning will not mask norm layers", type(model).__name__, e
            )
            self.output_layers = {prunable[-1]} if prunable else set()
        else:
            for node in graph.nodes:
                if node.op == "output":
                    self.output_layers = {m for a in _flat_args(node.args) if (m := _producing_module(a)) in prunable}
                elif node.op == "call_module" and isinstance(modules[node.target], NORM_TYPES):
                    src = node.args[0] if node.args else None
                    if isinstance(src, fx.Node) and src.op == "call_module" and src.target in prunable:
                        norms.setdefault(src.target, []).append(node.target)
        self.channel_dependents: dict[str, list[str]] = {}
        for name in prunable:
            deps = [f"{name}.bias"] if getattr(modules[name], "bias", None) is not None else []
            for norm in norms.get(name, []):
                deps += [f"{norm}.{p}" for p, v in modules[norm].named_parameters(recurse=False) if v is not None]
            self.channel_dependents[name] = deps


def _producing_module(node: fx.Node) -> str | None:
    """The module that last produced ``node``, looking back through functions and methods."""
    while node.op in ("call_function", "call_method"):
        inputs = _flat_args(node.args)
        if not inputs:
            return None
        node = inputs[0]
    return node.target if node.op == "call_module" else None


def _flat_args(args: object) -> list[fx.Node]:
    if isinstance(args, fx.Node):
        return [args]
    if isinstance(args, (tuple, list)):
        return [n for a in args for n in _flat_args(a)]
    if isinstance(args, dict):
        return [n for a in args.values() for n in _flat_args(a)]
    return []
