"""``model.init``: how a fresh network's Conv/Linear weights are drawn (config/model.py INITS).

As OpenLTH's ``model_init``, only the weights of the prunable kind of layer are redrawn;
biases and norm layers keep what their own ``reset_parameters`` gave them. The draw comes
from torch's global RNG, which the caller seeds (the dense run's seed, reinit's per round).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from prune_exp.config.model import DEFAULT_INIT, INITS, model_init

_DRAWS: dict[str, Callable[[torch.Tensor], object]] = {
    "kaiming_normal": nn.init.kaiming_normal_,  # fan_in, gain sqrt(2): He et al. (OpenLTH's default)
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
}
assert set(_DRAWS) | {DEFAULT_INIT} == set(INITS), "every model.init has its draw"

_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


@torch.no_grad()
def initialize(net: nn.Module, init: str) -> nn.Module:
    """Redraw every Conv/Linear weight of ``net`` by ``init`` (``default``: leave it); ``net``."""
    if init == DEFAULT_INIT:
        return net
    draw = _DRAWS[init]
    for module in net.modules():
        if isinstance(module, _LAYERS):
            draw(module.weight)
    return net


def build_net(model: Any, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """A fresh network from its config (``model``: a ``_target_`` plus its keys, ``init``
    among them), sized from the data and initialized as ``model.init`` says."""
    from omegaconf import OmegaConf

    from prune_exp.config import instantiate_at

    keys = [k for k in model if k != "init"]
    net = instantiate_at("model", OmegaConf.masked_copy(model, keys), input_shape=input_shape, num_classes=num_classes)
    return initialize(net, model_init(model))
