"""Physical compaction of a channel-pruned model with Torch-Pruning's dependency graph.

A channel can be removed only where it is dead in every layer coupled to it: Torch-Pruning
groups the layers whose channels must go together (a conv, its BatchNorm, the next layer's
inputs, and through residual additions every layer that writes into the same stream). For
each prunable layer (in order) we ask for the group of its masked-out output channels and
keep only the positions that are masked out in *every* conv/linear of the group that
produces them; the rest stay (a shortcut may still carry them). The compacted model
computes what the masked model computes (the masked channels were exactly zero) with
fewer FLOPs and parameters.

The plan (the sequence of (layer, channel indices) groups) is saved with the compacted
weights (safetensors + JSON: no pickle); :func:`load_compacted` replays it on a freshly
built model and loads the weights.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch_pruning as tp
from safetensors.torch import load_file
from torch import nn

from prune_exp.pruning.mask import Mask
from prune_exp.pruning.structure import PRUNABLE_TYPES
from prune_exp.store.atomic import write_json
from prune_exp.store.dense_cache import save_state
from prune_exp.store.files import COMPACT_FILE, COMPACT_PLAN_FILE

Plan = list[tuple[str, list[int]]]  # (root layer, its output channels removed), in order


def _out_handler(module: nn.Module):
    return tp.prune_linear_out_channels if isinstance(module, nn.Linear) else tp.prune_conv_out_channels


def _graph(model: nn.Module, input_shape: Sequence[int]) -> tp.DependencyGraph:
    device = next(model.parameters()).device
    return tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *input_shape, device=device))


def _apply(model: nn.Module, graph: tp.DependencyGraph, plan: Plan) -> None:
    modules = dict(model.named_modules())
    for name, idxs in plan:
        group = graph.get_pruning_group(modules[name], _out_handler(modules[name]), idxs=list(idxs))
        group.prune()


def compaction_plan(model: nn.Module, mask: Mask, input_shape: Sequence[int], skip: set[str] = frozenset()) -> Plan:
    """The groups of channels that are masked out everywhere they are coupled.

    ``skip``: layers whose outputs must stay (the network's output layer)."""
    names = {id(m): n for n, m in model.named_modules()}
    dead: dict[str, set[int]] = {}
    for name, module in model.named_modules():
        keep = mask.get(f"{name}.weight")
        if isinstance(module, PRUNABLE_TYPES) and keep is not None:
            dead[name] = set(torch.nonzero(~keep.reshape(keep.shape[0], -1).any(1)).flatten().tolist())
    graph = _graph(model, input_shape)
    modules = dict(model.named_modules())
    plan: Plan = []
    covered: set[str] = set()
    for name, candidates in dead.items():
        if name in covered or name in skip or not candidates:
            continue
        root = sorted(candidates)
        group = graph.get_pruning_group(modules[name], _out_handler(modules[name]), idxs=root)
        ok = [True] * len(root)
        for item in group.items:
            dep, idxs = item.dep, list(item.idxs)
            target = dep.target.module
            if dep.handler not in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
                continue
            if not isinstance(target, PRUNABLE_TYPES):
                continue
            tname = names.get(id(target))
            covered.add(tname)
            if tname in skip or len(idxs) != len(root):
                ok = [False] * len(root)  # an output layer, or an index mapping we do not follow
                continue
            for k, i in enumerate(idxs):
                ok[k] = ok[k] and int(i) in dead.get(tname, set())
        idxs = [i for i, good in zip(root, ok, strict=True) if good]
        if idxs and len(idxs) < modules[name].weight.shape[0]:
            plan.append((name, idxs))
    return plan


def compact(
    model: nn.Module, mask: Mask, input_shape: Sequence[int], skip: set[str] = frozenset()
) -> tuple[nn.Module, Plan]:
    """A copy of ``model`` (its weights already masked) with its dead channels removed."""
    plan = compaction_plan(model, mask, input_shape, skip)
    small = copy.deepcopy(model).eval()
    _apply(small, _graph(small, input_shape), plan)
    return small, plan


def save_compacted(directory: Path, model: nn.Module, plan: Plan) -> None:
    """``compact.safetensors`` (the weights) and ``compact.json`` (the plan), atomically."""
    save_state(directory / COMPACT_FILE, model.state_dict())
    write_json(directory / COMPACT_PLAN_FILE, {"plan": [[n, list(i)] for n, i in plan]})


def load_compacted(directory: Path, build_net: Callable[[], nn.Module], input_shape: Sequence[int]) -> nn.Module:
    """Rebuild the compacted model: a fresh net, the saved plan replayed, the weights loaded."""
    plan = [(n, list(i)) for n, i in json.loads((directory / COMPACT_PLAN_FILE).read_text())["plan"]]
    net = build_net().eval()
    _apply(net, _graph(net, input_shape), plan)
    net.load_state_dict(load_file(str(directory / COMPACT_FILE)))
    return net
