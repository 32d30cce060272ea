"""N networks of one architecture as one: every parameter and buffer stacked along a new
leading dim (``torch.func.stack_module_state``), run on N batches at once (``vmap`` over
``functional_call``). Each arm keeps its own BatchNorm statistics: the buffers are stacked
too, and BatchNorm updates arm i's slice from arm i's batch."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from prune_exp.fused.conv import im2col_conv1d


class StackedNets(nn.Module):
    """``holder`` is a copy of the arms' network whose every parameter and buffer holds all N
    arms' values, ``[N, *shape]``, under the network's own names; so a Mask of stacked bool
    tensors, MaskEnforcer, optimizers and checkpoints treat it as one network.

    :meth:`unstack` writes each arm's slice into its own network (before that network is
    pruned, measured or saved), :meth:`restack` reads them back (after its weights were placed
    for a round)."""

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        if not nets:
            raise ValueError("a fused group needs at least one arm")
        self.arms = len(nets)
        self.__dict__["nets"] = list(nets)  # the arms' own networks, outside this module's tree
        params, buffers = stack_module_state(nets)
        self.holder = copy.deepcopy(nets[0])
        for name, value in [*params.items(), *buffers.items()]:
            owner, _, leaf = name.rpartition(".")
            module = self.holder.get_submodule(owner)
            if name in params:
                module._parameters[leaf] = nn.Parameter(value.detach().clone())
            else:
                module._buffers[leaf] = value.detach().clone()
        im2col_conv1d(self.holder)  # faster than vmap's grouped kernels (fused/conv.py)
        self._forward = vmap(self._one_arm, randomness="different")

    @property
    def nets(self) -> list[nn.Module]:
        return self.__dict__["nets"]

    def _one_arm(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.holder, (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Arm i's network on ``x[i]``, for every i: ``[N, B, ...]`` in, ``[N, B, ...]`` out."""
        params = dict(self.holder.named_parameters())
        buffers = dict(self.holder.named_buffers())
        return self._forward(params, buffers, x)

    @torch.no_grad()
    def unstack(self) -> None:
        """Every arm's network gets its slice of the stacked weights and buffers."""
        state = self.holder.state_dict()
        for i, net in enumerate(self.nets):
            net.load_state_dict({k: v[i] for k, v in state.items()})

    @torch.no_grad()
    def restack(self) -> None:
        """The stacked weights and buffers become the arms' networks' (in place: the optimizer's
        and the mask enforcer's references stay valid)."""
        states = [net.state_dict() for net in self.nets]
        self.holder.load_state_dict({k: torch.stack([s[k] for s in states]) for k in states[0]})
