"""The papers' models: exact parameter counts, output shapes, names, configs, pruning."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from helpers import composed
from torch import nn

from prune_exp.config import ConfigError
from prune_exp.models.convnet import ConvNet
from prune_exp.models.init import build_net
from prune_exp.models.lenet import LeNet5
from prune_exp.models.mlp import MLP
from prune_exp.models.resnet_cifar import ResNetCIFAR, conv_layer_names
from prune_exp.models.torchvision_resnet import TorchvisionResNet
from prune_exp.models.vgg_cifar import VGGCIFAR
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Channel, Unstructured

MNIST, CIFAR, IMAGENET = (1, 28, 28), (3, 32, 32), (3, 224, 224)
CONV4 = [64, 64, 128, 128]
CONV6 = [*CONV4, 256, 256]


@dataclass(frozen=True)
class Spec:
    build: Callable[[tuple[int, ...], int], nn.Module]
    input_shape: tuple[int, ...]  # the paper's input; the count is for it
    classes: int
    params: int  # exact, what the class builds
    published: float | None  # the paper's count, None where it is not comparable
    rel_tol: float = 0.0
    forward_shape: tuple[int, ...] | None = None  # a smaller input for the forward test


# config option -> the model it builds; the counts are checked against the papers below
MODELS: dict[str, Spec] = {
    "lenet300": Spec(lambda s, k: MLP(s, k, hidden=[300, 100]), MNIST, 10, 266_610, 266_610),
    "lenet5": Spec(LeNet5, MNIST, 10, 431_080, 431e3, 0.001),  # Han et al.: 431K
    "conv2": Spec(lambda s, k: ConvNet(s, k, channels=[64, 64]), CIFAR, 10, 4_301_642, 4.3e6, 0.01),
    "conv4": Spec(lambda s, k: ConvNet(s, k, channels=CONV4), CIFAR, 10, 2_425_930, 2.4e6, 0.015),
    # LTH Fig. 2 says 1.7M, but its own layers add up to 2.26M (see test_conv_weights_match_the_lth_paper)
    "conv6": Spec(lambda s, k: ConvNet(s, k, channels=CONV6), CIFAR, 10, 2_262_602, None),
    "resnet20": Spec(lambda s, k: ResNetCIFAR(s, k, depth=20), CIFAR, 10, 272_474, 0.27e6, 0.03),
    "resnet56": Spec(lambda s, k: ResNetCIFAR(s, k, depth=56), CIFAR, 10, 855_770, 0.85e6, 0.03),
    "resnet110": Spec(lambda s, k: ResNetCIFAR(s, k, depth=110), CIFAR, 10, 1_730_714, 1.73e6, 0.03),
    "vgg11": Spec(lambda s, k: VGGCIFAR(s, k, depth=11), CIFAR, 10, 9_231_114, None),
    "vgg16": Spec(lambda s, k: VGGCIFAR(s, k, depth=16), CIFAR, 10, 14_728_266, 14.7e6, 0.02),
    "vgg19": Spec(lambda s, k: VGGCIFAR(s, k, depth=19), CIFAR, 10, 20_040_522, None),
    "resnet18": Spec(
        lambda s, k: TorchvisionResNet(s, k, arch="resnet18"), IMAGENET, 1000, 11_689_512, 11_689_512, 0, (3, 64, 64)
    ),
    "resnet34": Spec(
        lambda s, k: TorchvisionResNet(s, k, arch="resnet34"), IMAGENET, 1000, 21_797_672, 21_797_672, 0, (3, 64, 64)
    ),
    "resnet50": Spec(
        lambda s, k: TorchvisionResNet(s, k, arch="resnet50"), IMAGENET, 1000, 25_557_032, 25_557_032, 0, (3, 64, 64)
    ),
}
# the family options build what their defaults say
FAMILY_DEFAULTS = {"resnet_cifar": "resnet20", "vgg_cifar": "vgg16", "torchvision_resnet": "resnet18"}
NAMES = list(MODELS)
SHORTCUTS = {"resnet20": 2, "resnet56": 2, "resnet110": 2, "resnet18": 3, "resnet34": 3, "resnet50": 4}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    """Every model once, on its paper's input shape (about 2 s in all)."""
    torch.manual_seed(0)
    return {name: spec.build(spec.input_shape, spec.classes) for name, spec in MODELS.items()}


# ----------------------------------------------------------------------------- counts
@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_are_exact_and_match_the_papers(name: str, built: dict[str, nn.Module]) -> None:
    spec = MODELS[name]
    n = count(built[name])
    assert n == spec.params
    if spec.published is not None:
        assert abs(n - spec.published) <= spec.rel_tol * spec.published, (n, spec.published)


def test_conv_weights_match_the_lth_paper(built: dict[str, nn.Module]) -> None:
    """Frankle & Carbin, Fig. 2: conv weights 38K / 260K / 1.1M (their Conv-6 total of 1.7M
    is below the sum of its own layers: 1.14M conv + 1.12M FC)."""
    for name, published in (("conv2", 38e3), ("conv4", 260e3), ("conv6", 1.1e6)):
        convs = sum(m.weight.numel() for m in built[name].modules() if isinstance(m, nn.Conv2d))
        assert abs(convs - published) <= 0.05 * published, (name, convs)
    fc = sum(m.weight.numel() for m in built["conv6"].modules() if isinstance(m, nn.Linear))
    assert fc == 4 * 4 * 256 * 256 + 256 * 256 + 256 * 10


def test_torchvision_resnets_are_torchvisions_with_fc_renamed(built: dict[str, nn.Module]) -> None:
    from torchvision import models

    for arch in ("resnet18", "resnet50"):
        ours = {k.replace("classifier.", "fc."): v.shape for k, v in built[arch].state_dict().items()}
        theirs = {k: v.shape for k, v in getattr(models, arch)(weights=None).state_dict().items()}
        assert ours == theirs, arch
        assert list(built[arch].named_children())[-1][0] == "classifier"


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", NAMES)
def test_forward_gives_one_logit_per_class(name: str) -> None:
    spec = MODELS[name]
    shape = spec.forward_shape or spec.input_shape
    torch.manual_seed(0)
    model = spec.build(shape, 10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_other_input_shapes_and_errors() -> None:
    x = torch.randn(2, 1, 28, 28)
    for model in (ResNetCIFAR((1, 28, 28), 7), VGGCIFAR((1, 28, 28), 7), ConvNet((1, 28, 28), 7, channels=CONV6)):
        assert model.eval()(x).shape == (2, 7)
    assert TorchvisionResNet((1, 64, 64), 5).eval()(torch.randn(1, 1, 64, 64)).shape == (1, 5)
    assert VGGCIFAR((3, 64, 64), 10).eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)  # global pool
    with pytest.raises(ConfigError, match=r"needs image inputs, the data's input_shape \(1, 40\) is not allowed"):
        ResNetCIFAR((1, 40), 10)
    with pytest.raises(ConfigError, match=r"lenet5: input_shape \(1, 12, 12\) shrinks to nothing at conv2"):
        LeNet5((1, 12, 12), 10)
    with pytest.raises(ConfigError, match=r"vgg11: input_shape \(3, 8, 8\) shrinks to nothing at pool4.*16x16"):
        VGGCIFAR((3, 8, 8), 10, depth=11)
    with pytest.raises(ConfigError, match=r"model\.depth=21 is not allowed; allowed: 6n\+2"):
        ResNetCIFAR(CIFAR, 10, depth=21)
    with pytest.raises(ConfigError, match=r"model\.depth=15 is not allowed; allowed: one of 11, 13, 16, 19"):
        VGGCIFAR(CIFAR, 10, depth=15)
    with pytest.raises(ConfigError, match=r"model\.arch='resnet19' is not allowed"):
        TorchvisionResNet(IMAGENET, 10, arch="resnet19")


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("option", [*NAMES, *FAMILY_DEFAULTS])
def test_every_model_option_builds_the_model_its_name_says(option: str) -> None:
    spec = MODELS[FAMILY_DEFAULTS.get(option, option)]
    with composed([f"model={option}"]) as cfg:
        model = build_net(cfg.model, spec.input_shape, spec.classes)
    assert count(model) == spec.params
    assert list(dict(model.named_modules()))[-1] == "classifier"


# ----------------------------------------------------------------------------- names
def test_layer_names_address_the_papers_layers(built: dict[str, nn.Module]) -> None:
    names = {name: [n for n, _ in built[name].named_parameters()] for name in ("lenet5", "conv6", "vgg16", "resnet56")}
    assert names["lenet5"] == [f"{m}.{p}" for m in ("conv1", "conv2", "fc1", "classifier") for p in ("weight", "bias")]
    assert [n for n in names["conv6"] if n.endswith("weight")] == [
        *(f"conv{i}.weight" for i in range(1, 7)),
        "fc1.weight",
        "fc2.weight",
        "classifier.weight",
    ]
    assert sum(n.startswith("conv") and n.endswith(".weight") for n in names["vgg16"]) == 13  # Li et al.'s Conv_1..13
    resnet = names["resnet56"]
    assert {"conv1.weight", "stage1.block0.conv1.weight", "stage3.block8.conv2.weight"} <= set(resnet)
    assert [n for n in resnet if "shortcut" in n] == [
        f"stage{s}.block0.shortcut.{m}.{p}"
        for s in (2, 3)
        for m, p in (("conv", "weight"), ("bn", "weight"), ("bn", "bias"))
    ]


@pytest.mark.parametrize(
    ("depth", "skips"),
    [
        (
            56,
            {
                16: "stage1.block7.conv1",
                20: "stage2.block0.conv1",
                38: "stage3.block0.conv1",
                54: "stage3.block8.conv1",
            },
        ),
        (110, {36: "stage1.block17.conv1", 38: "stage2.block0.conv1", 74: "stage3.block0.conv1"}),
    ],
)
def test_li_et_al_layer_index(depth: int, skips: dict[int, str], built: dict[str, nn.Module]) -> None:
    model = built[f"resnet{depth}"]
    assert model.conv_layers == conv_layer_names(depth)
    for i, module in skips.items():
        assert model.conv_layers[i] == module
    # every 3x3 convolution, in forward order, once; the 1x1 shortcuts are not counted
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert list(model.conv_layers.values()) == convs and list(model.conv_layers) == list(range(1, depth))


# ----------------------------------------------------------------------------- pruning
@pytest.mark.parametrize("name", NAMES)
def test_default_prunable_set_is_every_conv_and_linear_weight(name: str, built: dict[str, nn.Module]) -> None:
    model = built[name]
    p = Pruner(model, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=[0.5])
    weights = [n for n, prm in model.named_parameters() if prm.dim() > 1]  # biases and norms are 1-D
    assert p.prunable_names == weights and p.masked_names == weights
    assert p.prunable_names[0] == ("fc1.weight" if name == "lenet300" else "conv1.weight")  # the first layer
    assert p.prunable_names[-1] == "classifier.weight"
    assert p.graph.output_layers == {"classifier"}
    projections = [n for n in weights if "shortcut" in n or "downsample" in n]  # the 1x1 shortcuts
    assert len(projections) == SHORTCUTS.get(name, 0)


@pytest.mark.parametrize("name", ["lenet5", "conv2", "vgg16"])
def test_channel_pruning_on_sequential_models(name: str, built: dict[str, nn.Module]) -> None:
    model = built[name]
    p = Pruner(model, criterion=Magnitude(), structure=Channel(), scope="global", sparsities=[0.5])
    assert "classifier.weight" not in p.prunable_names
    mask = p.prune(p.initial_mask(), 1)
    gone_total = 0
    for param in p.prunable_names:
        rows = mask[param].flatten(1)
        assert bool((rows.all(1) | ~rows.any(1)).all()), f"{param}: a filter is whole or gone"
        gone_total += int((~rows.any(1)).sum())
        for dep in p.graph.channel_dependents[param.removesuffix(".weight")]:
            assert torch.equal(mask[dep], rows.all(1)), dep
    assert gone_total > 0
    if name == "vgg16":
        assert p.graph.channel_dependents["conv13"] == ["conv13.bias", "bn13.weight", "bn13.bias"]
    # the masked model runs, and a pruned channel is exactly zero after its layer (and norm)
    spec = MODELS[name]
    masked = spec.build(spec.input_shape, spec.classes)
    masked.load_state_dict(model.state_dict())
    mask.apply_(dict(masked.named_parameters()))
    masked.eval()
    after = "bn2" if name == "vgg16" else "conv2"
    acts = {}
    getattr(masked, after).register_forward_hook(lambda m, i, o: acts.setdefault("out", o))
    with torch.no_grad():
        assert masked(torch.randn(2, *spec.input_shape)).shape == (2, spec.classes)
    dead = ~mask["conv2.weight"].flatten(1).any(1)
    assert torch.equal(acts["out"][:, dead], torch.zeros_like(acts["out"][:, dead]))


def test_channel_pruning_on_residual_models_masks_each_conv_alone_today() -> None:
    """structure.Channel knows no residual adds: it accepts a ResNet and masks each conv's
    filters (with its BatchNorm) on their own, so a filter pruned in a block's conv2 is zero
    after bn2 but comes back through the shortcut after the add. Channel groups across a
    residual add (Torch-Pruning's dependency graph) are not implemented yet."""
    torch.manual_seed(0)
    model = ResNetCIFAR(CIFAR, 10, depth=20)
    p = Pruner(model, criterion=Magnitude(), structure=Channel(), scope="layerwise", sparsities=[0.5])
    assert "classifier.weight" not in p.prunable_names and "stage2.block0.shortcut.conv.weight" in p.prunable_names
    assert p.graph.channel_dependents["stage2.block0.shortcut.conv"] == [
        "stage2.block0.shortcut.bn.weight",
        "stage2.block0.shortcut.bn.bias",
    ]
    mask = p.prune(p.initial_mask(), 1)
    mask.apply_(dict(model.named_parameters()))
    model.eval()
    block = model.stage1.block0
    acts = {}
    block.bn2.register_forward_hook(lambda m, i, o: acts.setdefault("bn2", o))
    block.register_forward_hook(lambda m, i, o: acts.setdefault("block", o))
    with torch.no_grad():
        model(torch.randn(2, *CIFAR))
    dead = ~mask["stage1.block0.conv2.weight"].flatten(1).any(1)
    assert int(dead.sum()) == 8
    assert torch.equal(acts["bn2"][:, dead], torch.zeros_like(acts["bn2"][:, dead]))
    assert acts["block"][:, dead].abs().sum() > 0  # the identity shortcut carries the channel on


def test_the_lth_output_layer_rate_and_li_et_al_skips_are_addressable(built: dict[str, nn.Module]) -> None:
    model = built["resnet56"]
    skip = [f"{model.conv_layers[i]}.weight" for i in (16, 20, 38, 54)]
    p = Pruner(
        model,
        criterion=Magnitude(),
        structure=Unstructured(),
        scope="layerwise",
        sparsities=[0.5],
        include=["stage*.block*.conv1.weight"],
        exclude=skip,
        layer_rate_scale={"stage3.*": 0.5},
    )
    assert len(p.prunable_names) == 27 - 4 and not set(skip) & set(p.prunable_names)
    assert {ly.param for ly in p.layers if ly.scale == 0.5} == {f"stage3.block{b}.conv1.weight" for b in range(1, 8)}
    p = Pruner(
        built["conv6"],
        criterion=Magnitude(),
        structure=Unstructured(),
        scope="layerwise",
        sparsities=[0.2],
        layer_rate_scale={"classifier.*": 0.5},
    )
    assert [ly.scale for ly in p.layers] == [1.0] * 8 + [0.5]
    assert math.isclose(p.layer_target(p.layers[-1], 1), 0.1)


@pytest.mark.parametrize(
    ("init", "std"),  # the draw's standard deviation for a weight of fan_in x fan_out
    [
        ("kaiming_normal", lambda fi, fo: math.sqrt(2 / fi)),
        ("kaiming_uniform", lambda fi, fo: math.sqrt(2 / fi)),
        ("xavier_normal", lambda fi, fo: math.sqrt(2 / (fi + fo))),
        ("xavier_uniform", lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ],
)
def test_model_init_redraws_every_conv_and_linear_weight_and_nothing_else(
    init: str, std: Callable[[int, int], float]
) -> None:
    def built(name: str, init: str) -> nn.Module:
        torch.manual_seed(0)
        with composed([f"model={name}", f"model.init={init}"]) as cfg:
            return build_net(cfg.model, (3, 32, 32), 10)

    default, drawn = built("vgg11", "default"), built("vgg11", init)
    assert built("vgg11", init).state_dict().keys() == drawn.state_dict().keys()
    for (name, a), b in zip(default.state_dict().items(), drawn.state_dict().values(), strict=True):
        weight = name.endswith("weight") and a.dim() > 1  # a conv's or linear layer's
        assert torch.equal(a, b) != weight, name  # biases and BatchNorm keep PyTorch's init
        if weight:
            fan_out, fan_in = a.shape[0] * a[0, 0].numel(), a[0].numel()
            assert torch.equal(b, built("vgg11", init).state_dict()[name])  # seeded: reproducible
            if b.numel() >= 100_000:  # the sample's std within 2% of the draw's
                assert b.std().item() == pytest.approx(std(fan_in, fan_out), rel=0.02), name


def test_model_init_default_is_pytorchs_own_and_a_user_model_takes_it_too() -> None:
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    plain = MLP((40,), 10, hidden=[300])
    with composed(["model=mlp", "model.hidden=[300]"]) as cfg:
        torch.manual_seed(0)
        built = build_net(cfg.model, (40,), 10)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), built.parameters(), strict=True))
    user = OmegaConf.create({"_target_": "prune_exp.models.mlp.MLP", "hidden": [300], "init": "xavier_normal"})
    torch.manual_seed(0)
    net = build_net(user, (40,), 10)  # no schema: init is taken off before the constructor sees it
    assert not torch.equal(net.fc1.weight, plain.fc1.weight)
    assert torch.equal(net.fc1.bias, plain.fc1.bias)


def test_model_init_is_in_the_dense_spec_only_when_it_is_not_the_default() -> None:
    from prune_exp.app.run import config_fingerprint, dense_spec_of

    specs, prints = {}, {}
    for init in ("default", "kaiming_normal"):
        with composed([f"model.init={init}", "paths.root_dir=/r"]) as cfg:
            specs[init], prints[init] = dense_spec_of(cfg, "digest"), config_fingerprint(cfg)
    assert "init" not in specs["default"]["model"]  # entries from before model.init keep their hash
    assert specs["kaiming_normal"]["model"] == {**specs["default"]["model"], "init": "kaiming_normal"}
    assert prints["default"] != prints["kaiming_normal"]


# The MLP's fingerprint in `model=mlp` and its dense spec's model node, as the code before
# model.dropout computed them (job dirs, job-cache entries and dense runs stay valid).
MLP_FINGERPRINT_BEFORE_DROPOUT = "0ac0fe376856b415"


def test_model_dropout_is_hashed_only_when_it_is_not_the_default() -> None:
    from prune_exp.app.run import config_fingerprint, dense_spec_of, to_run_config

    specs, prints = {}, {}
    for p in (0.0, 0.3):
        with composed(["model=mlp", f"model.dropout={p}", "paths.root_dir=/r"]) as cfg:
            specs[p], prints[p] = dense_spec_of(cfg, "digest"), config_fingerprint(cfg)
    assert "dropout" not in specs[0.0]["model"] and prints[0.0] == MLP_FINGERPRINT_BEFORE_DROPOUT
    assert specs[0.3]["model"] == {**specs[0.0]["model"], "dropout": 0.3} and prints[0.3] != prints[0.0]
    nets = {p: MLP((40,), 10, dropout=p) for p in (0.0, 0.3)}
    assert [type(m) for m in nets[0.3].modules()].count(torch.nn.Dropout) == 2
    assert nets[0.0].state_dict().keys() == nets[0.3].state_dict().keys()  # the same weights' names
    with composed(["model=mlp", "model.dropout=1.0"]) as cfg, pytest.raises(ConfigError, match=r"model\.dropout=1\.0"):
        to_run_config(cfg, resolve_paths=False)
