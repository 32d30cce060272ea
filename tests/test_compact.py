"""Physical compaction of channel-pruned models (Torch-Pruning): the compacted model computes
what the masked one does, with fewer parameters and FLOPs, and reloads from its files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prune_exp.measure.compact import compact, load_compacted, save_compacted
from prune_exp.measure.efficiency import flop_profile
from prune_exp.models.cnn1d import CNN1D
from prune_exp.models.resnet_cifar import ResNetCIFAR
from prune_exp.models.vgg_cifar import VGGCIFAR
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Channel

MODELS = {
    "resnet20": (lambda: ResNetCIFAR((3, 32, 32), 10, depth=20), (3, 32, 32), ["*.conv1.weight"]),
    "resnet20_all": (lambda: ResNetCIFAR((3, 32, 32), 10, depth=20), (3, 32, 32), []),
    "vgg16": (lambda: VGGCIFAR((3, 32, 32), 10, depth=16), (3, 32, 32), []),
    "cnn1d": (lambda: CNN1D((1, 40), 10), (1, 40), []),
}


def masked(name: str, sparsity: float = 0.5):
    build, shape, include = MODELS[name]
    torch.manual_seed(0)
    net = build()
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine terms
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    pruner = Pruner(
        net, criterion=Magnitude(), structure=Channel(), scope="layerwise", sparsities=[sparsity], include=include
    )
    mask = pruner.prune(pruner.initial_mask(), 1)
    mask.apply_(dict(net.named_parameters()))
    return net.eval(), mask, shape, build, pruner.graph.output_layers


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compacted_model_matches_the_masked_one_and_is_smaller(name: str, tmp_path: Path) -> None:
    net, mask, shape, build, outputs = masked(name)
    small, plan = compact(net, mask, shape, skip=outputs)
    x = torch.randn(8, *shape)
    with torch.no_grad():
        diff = (small(x) - net(x)).abs().max().item()
    assert diff <= 1e-4
    assert plan, "nothing was compacted"
    n_small = sum(p.numel() for p in small.parameters())
    n_masked = sum(p.numel() for p in net.parameters())
    assert n_small < n_masked and flop_profile(small, shape).total < flop_profile(net, shape).total
    save_compacted(tmp_path, small, plan)
    again = load_compacted(tmp_path, build, shape)
    with torch.no_grad():
        assert torch.equal(again(x), small(x))


def test_a_channel_a_shortcut_still_carries_is_kept() -> None:
    # every conv pruned at 50%: a block's second conv shares its output stream with the
    # shortcut, so its masked channels stay unless every writer of the stream masks them too
    net, mask, shape, _, outputs = masked("resnet20_all")
    _, plan = compact(net, mask, shape, skip=outputs)
    roots = {n for n, _ in plan}
    assert any(r.endswith("conv1") and "block" in r for r in roots)
    assert "conv1" not in roots  # the stem writes the residual stream of stage 1: kept
