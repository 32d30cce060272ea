"""Exact invariants of masks, criteria, structures, scopes and schedules."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from prune_exp.config import ConfigError
from prune_exp.models.cnn1d import CNN1D
from prune_exp.models.mlp import MLP
from prune_exp.pruning.criteria import Magnitude, Random, ScoreContext, Taylor
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import (
    Pruner,
    round_fractions,
    scaled_sparsity,
    select_lowest,
    select_lowest_weighted,
    sparsity_schedule,
)
from prune_exp.pruning.structure import NM, Channel, Unstructured


def make_pruner(
    model: nn.Module, *, scope: str = "global", sparsities=(0.5,), structure=None, criterion=None, **kw
) -> Pruner:
    return Pruner(
        model,
        criterion=criterion or Magnitude(),
        structure=structure or Unstructured(),
        scope=scope,
        sparsities=list(sparsities),
        **kw,
    )


def cnn(batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return CNN1D((1, 40), 10, channels=[8, 12, 16], batch_norm=batch_norm)


def weights(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach() for n in names}


# ------------------------------------------------------------------------------- schedule
def test_iterative_schedule_removes_rate_of_remaining_and_hits_target_exactly() -> None:
    s = sparsity_schedule(0.9, "iterative", 0.2)
    assert len(s) == 11  # 1 - 0.8**10 = 0.893 < 0.9 <= 1 - 0.8**11
    for k, sk in enumerate(s[:-1], start=1):
        assert sk == pytest.approx(1 - 0.8**k, abs=1e-12)
    assert s[-1] == 0.9
    assert all(p == pytest.approx(0.2) for p in round_fractions(s)[:-1])
    assert round_fractions(s)[-1] < 0.2  # the clipped last round


def test_one_shot_schedule_is_one_round() -> None:
    assert sparsity_schedule(0.75, "one_shot", 0.2) == [0.75]


def test_iterative_schedule_when_target_is_a_power_of_the_rate() -> None:
    s = sparsity_schedule(1 - 0.5**3, "iterative", 0.5)
    assert s == pytest.approx([0.5, 0.75, 0.875]) and len(s) == 3


def test_scaled_sparsity_prunes_a_fixed_fraction_of_the_rate_per_round() -> None:
    s = sparsity_schedule(0.9, "iterative", 0.2)
    assert scaled_sparsity(s, 3, 0.5) == pytest.approx(1 - 0.9**3)


# ------------------------------------------------------------------------------- selection
def test_select_lowest_breaks_ties_by_lower_index() -> None:
    scores = torch.tensor([3.0, 1.0, 2.0, 1.0, 1.0, 0.0])
    assert select_lowest(scores, 3).tolist() == [False, True, False, True, False, True]
    assert select_lowest(scores, 0).sum() == 0 and select_lowest(scores, 6).all()


def test_select_lowest_on_all_equal_scores_takes_the_first_k() -> None:
    assert torch.nonzero(select_lowest(torch.zeros(10), 4)).flatten().tolist() == [0, 1, 2, 3]


def test_select_lowest_weighted_takes_the_nearest_total_size() -> None:
    scores = torch.tensor([0.1, 0.2, 0.3])
    sizes = torch.tensor([4.0, 4.0, 10.0], dtype=torch.float64)
    assert select_lowest_weighted(scores, sizes, 7.0).tolist() == [True, True, False]  # 8 is nearer 7 than 4
    assert select_lowest_weighted(scores, sizes, 5.0).tolist() == [True, False, False]  # 4 is nearer 5 than 8
    assert select_lowest_weighted(scores, sizes, 5.0, at_least=2).tolist() == [True, True, False]


# ------------------------------------------------------------------------------- prunable set
def test_default_prunable_set_is_every_conv_and_linear_weight_and_nothing_else() -> None:
    model = cnn(batch_norm=True)
    p = make_pruner(model)
    assert p.prunable_names == ["conv1.weight", "conv2.weight", "conv3.weight", "classifier.weight"]
    assert not any(n.endswith("bias") or n.startswith("bn") for n in p.masked_names)


def test_include_exclude_patterns_and_unmatched_pattern_error() -> None:
    model = cnn()
    assert make_pruner(model, exclude=["classifier.*"]).prunable_names == [
        "conv1.weight",
        "conv2.weight",
        "conv3.weight",
    ]
    assert make_pruner(model, include=["conv[12].*"]).prunable_names == ["conv1.weight", "conv2.weight"]
    with pytest.raises(ConfigError, match=r"prune\.exclude pattern 'fc9\.\*' matches no prunable parameter"):
        make_pruner(model, exclude=["fc9.*"])
    with pytest.raises(ConfigError, match="no prunable parameters left"):
        make_pruner(model, exclude=["*"])


# ------------------------------------------------------------------------------- unstructured
@pytest.mark.parametrize("target", [0.0, 0.2, 0.5, 0.9, 0.99])
def test_layerwise_hits_the_target_within_one_weight_per_tensor_and_prunes_equal_fractions(target: float) -> None:
    model = cnn()
    p = make_pruner(model, scope="layerwise", sparsities=[target])
    mask = p.prune(p.initial_mask(), 1)
    for name in p.prunable_names:
        n = mask[name].numel()
        assert abs(mask.pruned([name]) - target * n) <= 0.5 + 1e-9, name
    assert max(mask.layer_sparsity()[n] for n in p.prunable_names) - min(
        mask.layer_sparsity()[n] for n in p.prunable_names
    ) <= max(1 / mask[n].numel() for n in p.prunable_names)


@pytest.mark.parametrize("target", [0.2, 0.5, 0.9])
def test_global_magnitude_hits_the_target_and_keeps_every_larger_weight(target: float) -> None:
    model = cnn()
    p = make_pruner(model, scope="global", sparsities=[target])
    mask = p.prune(p.initial_mask(), 1)
    total = mask.numel(p.prunable_names)
    assert abs(mask.pruned(p.prunable_names) - target * total) <= 0.5 + 1e-9
    w = weights(model, p.prunable_names)
    kept = torch.cat([w[n].abs()[mask[n]] for n in p.prunable_names])
    pruned = torch.cat([w[n].abs()[~mask[n]] for n in p.prunable_names])
    assert kept.min() >= pruned.max()
    # global != layerwise: the layers end up with different sparsities
    sp = [mask.layer_sparsity()[n] for n in p.prunable_names]
    assert max(sp) - min(sp) > 0.05


def test_ties_are_broken_deterministically_by_position() -> None:
    model = MLP((1, 4), 2, hidden=[3])
    with torch.no_grad():
        for prm in model.parameters():
            prm.fill_(1.0)  # every score ties
    p = make_pruner(model, sparsities=[0.5])
    mask = p.prune(p.initial_mask(), 1)
    # 12 + 6 = 18 weights, 9 pruned: the first 9 in (layer, position) order
    assert mask["fc1.weight"].flatten().tolist() == [False] * 9 + [True] * 3
    assert mask["classifier.weight"].all()
    assert mask == p.prune(p.initial_mask(), 1)


def test_iterative_masks_only_shrink_and_follow_the_schedule() -> None:
    model = cnn()
    sched = sparsity_schedule(0.9, "iterative", 0.2)
    p = make_pruner(model, sparsities=sched)
    mask = p.initial_mask()
    gen = torch.Generator().manual_seed(0)
    for r in range(1, p.rounds + 1):
        with torch.no_grad():  # training moves weights between rounds; pruned ones stay 0
            for _n, prm in model.named_parameters():
                prm.add_(0.05 * torch.randn(prm.shape, generator=gen))
            mask.apply_(dict(model.named_parameters()))
        new = p.prune(mask, r)
        assert new.is_subset_of(mask)
        assert abs(new.pruned(p.prunable_names) - sched[r - 1] * new.numel(p.prunable_names)) <= 0.5 + 1e-9
        mask = new
    assert mask.sparsity(p.prunable_names) == pytest.approx(0.9, abs=1 / mask.numel(p.prunable_names))


def test_layer_rate_scale_prunes_the_output_layer_at_half_rate() -> None:
    model = cnn()
    sched = sparsity_schedule(0.9, "iterative", 0.2)
    p = make_pruner(model, scope="layerwise", sparsities=sched, layer_rate_scale={"classifier.*": 0.5})
    mask = p.initial_mask()
    for r in range(1, 4):
        mask = p.prune(mask, r)
    n = mask["classifier.weight"].numel()
    assert abs(mask.pruned(["classifier.weight"]) - (1 - 0.9**3) * n) <= 0.5 + 1e-9
    assert abs(mask.pruned(["conv2.weight"]) - (1 - 0.8**3) * mask["conv2.weight"].numel()) <= 0.5 + 1e-9


def test_random_criterion_depends_on_seed_and_round_only() -> None:
    model = cnn()
    a = make_pruner(model, criterion=Random(), sparsities=[0.5, 0.75], seed=3)
    b = make_pruner(model, criterion=Random(), sparsities=[0.5, 0.75], seed=3)
    c = make_pruner(model, criterion=Random(), sparsities=[0.5, 0.75], seed=4)
    assert a.prune(a.initial_mask(), 1) == b.prune(b.initial_mask(), 1)
    assert a.prune(a.initial_mask(), 1) != c.prune(c.initial_mask(), 1)


def test_nan_scores_fail_loudly() -> None:
    model = cnn()
    with torch.no_grad():
        model.conv1.weight[0, 0, 0] = math.nan
    p = make_pruner(model)
    with pytest.raises(FloatingPointError, match=r"conv1\.weight"):
        p.prune(p.initial_mask(), 1)


# ------------------------------------------------------------------------------- channel
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_channel_masks_zero_whole_filters_with_their_bias_and_norm_and_never_the_classes(scope: str) -> None:
    model = cnn(batch_norm=True)
    p = make_pruner(model, scope=scope, structure=Channel(), sparsities=[0.5])
    assert "classifier.weight" not in p.prunable_names  # its output units are the classes
    mask = p.prune(p.initial_mask(), 1)
    for i in (1, 2, 3):
        w = mask[f"conv{i}.weight"]
        per_filter = w.flatten(1)
        assert bool((per_filter.all(1) | ~per_filter.any(1)).all()), "a filter is either whole or gone"
        kept = per_filter.all(1)
        assert 0 < int(kept.sum()) < len(kept)
        for dep in (f"conv{i}.bias", f"bn{i}.weight", f"bn{i}.bias"):
            assert torch.equal(mask[dep], kept), dep
    # the pruned channels are exactly zero after the norm, for any input
    mask.apply_(dict(model.named_parameters()))
    model.eval()
    acts = {}
    model.bn2.register_forward_hook(lambda m, i, o: acts.setdefault("bn2", o))
    model(torch.randn(5, 1, 40))
    dead = ~mask["bn2.weight"]
    assert torch.equal(acts["bn2"][:, dead], torch.zeros_like(acts["bn2"][:, dead]))


def test_channel_layerwise_hits_the_fraction_of_filters_within_one_filter() -> None:
    model = cnn()
    p = make_pruner(model, scope="layerwise", structure=Channel(), sparsities=[0.3])
    mask = p.prune(p.initial_mask(), 1)
    for name in p.prunable_names:
        filters = mask[name].shape[0]
        gone = int((~mask[name].flatten(1).any(1)).sum())
        assert abs(gone - 0.3 * filters) <= 0.5 + 1e-9, name


def test_channel_scores_are_l1_norms_of_filters() -> None:
    model = MLP((1, 3), 2, hidden=[4])
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0, -1, 1], [0.1, 0.1, 0.1], [-5, 0, 0], [0.5, -0.5, 0]]))
    p = make_pruner(model, scope="layerwise", structure=Channel(), sparsities=[0.5])
    assert p.prunable_names == ["fc1.weight"]
    assert p.prune(p.initial_mask(), 1)["fc1.weight"][:, 0].tolist() == [True, False, True, False]


# ------------------------------------------------------------------------------- mask object
def test_mask_validates_and_round_trips_through_safetensors(tmp_path) -> None:
    with pytest.raises(TypeError, match="bool"):
        Mask({"w": torch.ones(2)})
    model = cnn()
    p = make_pruner(model, sparsities=[0.7])
    mask = p.prune(p.initial_mask(), 1)
    mask.save(tmp_path / "m.safetensors")
    assert Mask.load(tmp_path / "m.safetensors") == mask
    with pytest.raises(ValueError, match="shape"):
        Mask({"conv1.weight": torch.ones(3, dtype=torch.bool)}).check_against(dict(model.named_parameters()))


def test_channel_pruning_never_removes_a_layers_last_channel() -> None:
    model = cnn()
    p = make_pruner(model, scope="layerwise", structure=Channel(), sparsities=[0.99])
    mask = p.prune(p.initial_mask(), 1)
    for name in p.prunable_names:
        assert int(mask[name].flatten(1).all(1).sum()) == 1, name


# ------------------------------------------------------------------ Taylor, N:M
def _taylor_setup(structure):
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 8), relu=nn.ReLU(), classifier=nn.Linear(8, 3)))
    xs, ys = torch.randn(4, 5, 6), torch.randint(0, 3, (4, 5))
    batches = lambda: zip(xs, ys, strict=True)  # noqa: E731
    pruner = Pruner(
        net,
        criterion=Taylor(batches=3),
        structure=structure,
        scope="layerwise",
        sparsities=[0.5],
        score_batches=batches,
    )
    return net, xs, ys, pruner


def _manual_contributions(net, xs, ys, n_batches):
    """c_b = g_b * w for each of the first n_batches batches, computed here independently."""
    out = []
    for b in range(n_batches):
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(xs[b]), ys[b]).backward()
        out.append({n: (p.grad * p).detach().clone() for n, p in net.named_parameters() if n.endswith("weight")})
    net.zero_grad(set_to_none=True)
    return out


def test_taylor_scores_weights_by_squared_gradient_times_weight_over_the_batches() -> None:
    net, xs, ys, pruner = _taylor_setup(Unstructured())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ctx = ScoreContext(net, 1, 0, pruner.score_batches)
    scores = Taylor(batches=3).unit_scores(dict(net.named_parameters()), ctx, Unstructured())
    expected = _manual_contributions(net, xs, ys, 3)
    for name in ("fc1.weight", "classifier.weight"):
        want = sum(c[name] ** 2 for c in expected).reshape(-1)
        torch.testing.assert_close(scores[name], want, rtol=1e-5, atol=1e-9)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # no side effects
    assert all(p.grad is None for p in net.parameters())


def test_taylor_scores_a_channel_by_the_square_of_its_summed_contributions() -> None:
    net, xs, ys, pruner = _taylor_setup(Channel())
    ctx = ScoreContext(net, 1, 0, pruner.score_batches)
    scores = Taylor(batches=2).unit_scores({"fc1.weight": net.fc1.weight}, ctx, Channel())
    expected = _manual_contributions(net, xs, ys, 2)
    want = sum(c["fc1.weight"].sum(1) ** 2 for c in expected)  # (sum_s g_s w_s)^2, not sum_s (g_s w_s)^2
    torch.testing.assert_close(scores["fc1.weight"], want, rtol=1e-5, atol=1e-9)
    mask = pruner.prune(pruner.initial_mask(), 1)
    kept_rows = mask["fc1.weight"].all(1)
    assert int(kept_rows.sum()) == 4  # 8 filters, layerwise 50%


def test_nm_keeps_the_n_largest_of_every_m_along_the_input_dim() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3), conv2=nn.Conv2d(8, 8, 3), flatten=nn.Flatten(), classifier=nn.LazyLinear(4)
        )
    )
    net(torch.randn(1, 3, 8, 8))  # materialize the lazy classifier: 8 * 4 * 4 = 128 inputs
    pruner = Pruner(net, criterion=Magnitude(), structure=NM(2, 4), scope="global", sparsities=[0.5])
    assert pruner.prunable_names == ["conv2.weight", "classifier.weight"]  # conv1 has 3 input channels
    mask = pruner.prune(pruner.initial_mask(), 1)
    for name in pruner.prunable_names:
        w, keep = dict(net.named_parameters())[name].detach(), mask[name]
        groups_w = w.movedim(1, -1).reshape(-1, 4).abs()
        groups_k = keep.movedim(1, -1).reshape(-1, 4)
        assert (groups_k.sum(1) == 2).all()
        assert (
            groups_w[groups_k].reshape(-1, 2).min(1).values >= groups_w[~groups_k].reshape(-1, 2).max(1).values
        ).all()
    assert mask.sparsity(pruner.prunable_names) == 0.5


def test_nm_needs_its_own_sparsity_one_shot() -> None:
    from helpers import composed

    from prune_exp.app.run import to_run_config

    with composed(["structure=nm", "prune.schedule=one_shot", "prune.sparsity=0.5"]) as cfg:
        to_run_config(cfg, resolve_paths=False)
    # the key that is wrong is the one named: the schedule first, then the sparsity
    with (
        composed(["structure=nm"]) as cfg,
        pytest.raises(ConfigError, match=r"prune\.schedule='iterative' is not allowed; allowed: one_shot"),
    ):
        to_run_config(cfg, resolve_paths=False)
    with (
        composed(["structure=nm", "prune.schedule=one_shot"]) as cfg,
        pytest.raises(ConfigError, match=r"prune\.sparsity=0\.9 .*allowed: 0\.5 for structure=nm \(2:4"),
    ):
        to_run_config(cfg, resolve_paths=False)


def test_the_mask_enforcer_works_through_torchs_hooks_in_a_bare_loop() -> None:
    """No Lightning: the gradients are masked as they are accumulated (so clipping and the
    optimizer never see a pruned one), the weights after every step of an attached optimizer."""
    from prune_exp.lit.callbacks import MaskEnforcer

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    pruner = Pruner(net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=[0.5])
    mask = pruner.prune(pruner.initial_mask(), 1)
    enforcer = MaskEnforcer(net)
    enforcer.set_mask(mask)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    enforcer.attach([opt])
    params = dict(net.named_parameters())
    for _ in range(5):
        opt.zero_grad()
        net(torch.randn(32, 8)).square().mean().backward()
        masked = [p.grad[~mask[n]] for n, p in params.items() if n in mask]  # right after backward
        assert all(torch.equal(g, torch.zeros_like(g)) for g in masked)
        opt.step()
        for n, m in mask.items():
            assert torch.equal(params[n][~m], torch.zeros_like(params[n][~m]))
            assert not opt.state[params[n]]["momentum_buffer"][~m].any()
    enforcer.detach()  # the network trains unmasked again
    opt.zero_grad()
    net(torch.randn(32, 8)).square().mean().backward()
    assert any(bool(params[n].grad[~m].abs().sum() > 0) for n, m in mask.items())
