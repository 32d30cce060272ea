"""N networks of one architecture as one: every parameter and buffer stacked along a new
leading dim (``torch.func.stack_module_state``), run on N batches at once (``vmap`` over
``functional_call``). Each arm keeps its own BatchNorm statistics: the buffers are stacked
too, and BatchNorm updates arm i's slice from arm i's batch.

A network whose forward draws random numbers (dropout, or any random op) cannot be vmapped
with each arm's own stream: vmap's draws for N arms come from one generator, so arm i's would
depend on the group. Such a network's arms run one after another, each on its own stream
(fused/rng.py); its stacked parameters still take one optimizer step. Whether a forward
draws is found out once per mode (train, eval), by vmapping it on copies of the buffers with
``randomness="error"``."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from prune_exp.fused.conv import im2col_conv1d
from prune_exp.fused.rng import ArmRNG


class StackedNets(nn.Module):
    """``holder`` is a copy of the arms' network whose every parameter and buffer holds all N
    arms' values, ``[N, *shape]``, under the network's own names; so a Mask of stacked bool
    tensors, MaskEnforcer, optimizers and checkpoints treat it as one network.

    :meth:`unstack` writes each arm's slice into its own network (before that network is
    pruned, measured or saved), :meth:`restack` reads them back (after its weights were placed
    for a round)."""

    def __init__(self, nets: list[nn.Module], seeds: Sequence[int] | None = None) -> None:
        super().__init__()
        if not nets:
            raise ValueError("a fused group needs at least one arm")
        self.arms = len(nets)
        self.rng = ArmRNG(range(self.arms) if seeds is None else seeds)  # each arm's draws
        self._draws: dict[bool, bool] = {}  # training mode -> whether the forward draws random numbers
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
        self._vmapped = vmap(self._one_arm, randomness="error")

    @property
    def nets(self) -> list[nn.Module]:
        return self.__dict__["nets"]

    def _one_arm(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.holder, (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Arm i's network on ``x[i]``, for every i: ``[N, B, ...]`` in, ``[N, B, ...]`` out."""
        params = dict(self.holder.named_parameters())
        buffers = dict(self.holder.named_buffers())
        mode = self.holder.training
        if mode not in self._draws:
            self._draws[mode] = self._forward_draws(params, buffers, x)
        if not self._draws[mode]:
            return self._vmapped(params, buffers, x)
        outs = []
        for i in range(self.arms):  # each arm on its own stream
            with self.rng.arm(i, x.device):
                arm = ({k: v[i] for k, v in params.items()}, {k: v[i] for k, v in buffers.items()})
                outs.append(functional_call(self.holder, arm, (x[i],)))
        return torch.stack(outs)

    def _forward_draws(self, params: dict, buffers: dict, x: torch.Tensor) -> bool:
        """Whether the forward draws random numbers in the current mode (its buffers untouched)."""
        try:
            with torch.no_grad():
                self._vmapped(params, {k: v.clone() for k, v in buffers.items()}, x)
        except RuntimeError as e:
            if "randomness" not in str(e):
                raise
            return True
        return False

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
