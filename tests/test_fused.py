"""Fused arms (prune_exp/fused): N jobs' rounds trained together, each arm exactly as alone.

Tolerances: a fused step runs every arm through batched kernels (vmap turns a Linear into
one bmm and a convolution into one grouped convolution over the arms), which sum the same
products in another order than the single-arm kernels; float32 addition is not associative,
so the weights agree to rounding (here within 1e-5 relative, 1e-6 absolute after a few
steps), not bit for bit. What does not go through a kernel is exact: masks, the LR of
every step, the weights placed at round start, the zeros at pruned positions."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from helpers import tiny_dense, tiny_job
from lightning.pytorch.callbacks import Callback
from test_training import Probe, retrain

from prune_exp.config import AdamConfig, SGDConfig
from prune_exp.fused.cycle import FusedCycle
from prune_exp.fused.group import fit_group
from prune_exp.fused.optim import build_stacked_optimizer
from prune_exp.fused.stack import StackedNets
from prune_exp.job.rounds import build_rounds, dense_module
from prune_exp.lit.callbacks import MaskEnforcer
from prune_exp.lit.module import build_optimizer
from prune_exp.models.cnn1d import CNN1D
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Unstructured
from prune_exp.retrain.lr import StrategyLR
from prune_exp.retrain.strategies import plan_round, strategy_config

ATOL, RTOL = 1e-6, 1e-5
OPTIMIZERS = {
    "sgd": SGDConfig(lr=0.1, momentum=0.9, weight_decay=5e-4),
    "nesterov": SGDConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "plain_sgd": SGDConfig(lr=0.1, momentum=0.0, weight_decay=0.0),
    "adam": AdamConfig(lr=1e-3, weight_decay=1e-4),
}


def _random_mask(net: torch.nn.Module, seed: int) -> Mask:
    """Half of every weight pruned but conv1's: its filters have 5 weights, and a filter pruned
    whole feeds BatchNorm a constant channel, whose ReLU then switches on rounding noise."""
    g = torch.Generator().manual_seed(seed)
    names = [n for n, p in net.named_parameters() if n.endswith("weight") and p.dim() > 1 and n != "conv1.weight"]
    return Mask({n: torch.rand(net.get_parameter(n).shape, generator=g) > 0.5 for n in names})


@pytest.mark.parametrize("optim", list(OPTIMIZERS))
def test_a_fused_step_equals_each_arms_own_step_masks_lrs_and_batchnorm_included(optim: str) -> None:
    cfg, arms = OPTIMIZERS[optim], 3
    torch.manual_seed(0)
    # Not with Adam: a conv bias before BatchNorm has a gradient of pure rounding noise (the
    # norm takes the mean out), which Adam scales up to full steps of either sign.
    nets = [CNN1D((1, 40), 10, batch_norm=optim != "adam") for _ in range(arms)]
    alone = [copy.deepcopy(n) for n in nets]
    masks = [_random_mask(n, i) for i, n in enumerate(nets)]
    lrs = torch.tensor([1.0, 0.5, 0.1]) * cfg.lr

    stacked = StackedNets(nets)
    fused_opt = build_stacked_optimizer(cfg, stacked.holder.parameters(), arms)
    fused_opt.set_lr(lrs)
    enforcer = MaskEnforcer(stacked.holder)
    enforcer.set_mask(Mask({n: torch.stack([m[n] for m in masks]) for n in masks[0]}))
    enforcer.attach([fused_opt])
    opts, enforcers = [], []
    for net, mask, lr in zip(alone, masks, lrs.tolist(), strict=True):
        opts.append(build_optimizer(cfg, net.parameters()))
        opts[-1].param_groups[0]["lr"] = lr
        enforcers.append(MaskEnforcer(net))
        enforcers[-1].set_mask(mask)
        enforcers[-1].attach([opts[-1]])

    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, y = torch.randn(arms, 16, 1, 40, generator=g), torch.randint(0, 10, (arms, 16), generator=g)
        fused_opt.zero_grad()
        torch.nn.functional.cross_entropy(stacked(x).flatten(0, 1), y.flatten(), reduction="none").view(arms, -1).mean(
            1
        ).sum().backward()
        fused_opt.step()
        for i, (net, opt) in enumerate(zip(alone, opts, strict=True)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[i]), y[i]).backward()
            opt.step()
    stacked.unstack()
    for i, (net, ref) in enumerate(zip(nets, alone, strict=True)):
        for (name, got), want in zip(net.state_dict().items(), ref.state_dict().values(), strict=True):
            torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL, msg=lambda m, i=i, n=name: f"arm {i} {n}: {m}")
        for name, m in masks[i].items():  # pruned weights exactly zero in the fused arm too
            assert not bool(net.state_dict()[name][~m].any()), (i, name)


def test_the_stacked_optimizer_clears_with_the_round_and_the_first_step_starts_momentum_from_the_gradient() -> None:
    net = torch.nn.Linear(3, 2)
    stacked = StackedNets([net, copy.deepcopy(net)])
    opt = build_stacked_optimizer(OPTIMIZERS["sgd"], stacked.holder.parameters(), 2)
    opt.set_lr(torch.tensor([0.1, 0.2]))
    stacked.holder.weight.grad = torch.ones(2, 2, 3)
    opt.step()
    buf = opt.state[stacked.holder.weight]["momentum_buffer"]
    torch.testing.assert_close(
        buf, torch.ones(2, 2, 3) + 5e-4 * stacked.holder.weight.detach() / 1.0, atol=1e-3, rtol=0
    )
    opt.state.clear()
    opt.step()
    assert set(opt.state[stacked.holder.weight]) == {"momentum_buffer"}


def _pruner(net: torch.nn.Module) -> Pruner:
    return Pruner(net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=[0.5, 0.75])


class ArmProbe(Callback):
    """Per arm: the LR of every step, the weights at every round's first step, and after every
    step the count of pruned weights or momentum entries that are not exactly zero."""

    def __init__(self) -> None:
        self.lrs: dict[int, list[float]] = {}
        self.round_start: dict[int, list[dict[str, torch.Tensor]]] = {}
        self.violations = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs[trainer.global_step] = optimizer.param_groups[0]["lr"].tolist()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        cycle = next(c for c in trainer.callbacks if isinstance(c, FusedCycle))
        if batch_idx == 0 and trainer.current_epoch % cycle.epochs == 0:
            state = pl_module.stacked.holder.state_dict()
            self.round_start[cycle.arms[0].round] = [
                {k: v[i].clone() for k, v in state.items()} for i in range(len(cycle.arms))
            ]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        cycle = next(c for c in trainer.callbacks if isinstance(c, FusedCycle))
        params = dict(pl_module.stacked.holder.named_parameters())
        opt = trainer.optimizers[0]
        for i, arm in enumerate(cycle.arms):
            for n, m in arm.mask.items():
                buf = opt.state.get(params[n], {}).get("momentum_buffer")
                self.violations += bool(params[n][i][~m].any()) + (buf is not None and bool(buf[i][~m].any()))


# the 2020 strategies, and LR shapes with a warmup and a rule's per-arm peak (the LRs of a fused
# step are a float32 tensor: each arm's equals its job's alone, rounded to float32)
STRATEGIES = ("finetune", "weight_rewind", "lr_rewind", "clr", "allr")


@pytest.fixture(scope="module")
def fused_and_alone(tmp_path_factory):
    """The arms of STRATEGIES (arm i: seed i) fused, and each of them alone with the
    Probe of test_training; both from the same dense runs."""
    tmp = tmp_path_factory.mktemp("fused")
    jobs = [tiny_job(seed=s) for s in range(len(STRATEGIES))]
    denses = [tiny_dense(job, tmp / "cache") for job in jobs]
    strategies = [strategy_config(s, budget=2) for s in STRATEGIES]
    plans = [plan_round(rt, 4, jobs[0].steps_per_epoch) for rt in strategies]
    fused_results: list[list] = [[] for _ in jobs]
    modules = [dense_module(job, dense) for job, dense in zip(jobs, denses, strict=True)]
    rounds = [
        build_rounds(
            job,
            dense,
            module,
            _pruner(module.net),
            plan=plan,
            lr=StrategyLR.of(rt, plan, job.schedule, job.steps_per_epoch),
            log_dir=tmp / f"arm{i}",
            on_round_end=fused_results[i].append,
        )
        for i, (job, dense, module, plan, rt) in enumerate(zip(jobs, denses, modules, plans, strategies, strict=True))
    ]
    probe = ArmProbe()
    arms = [r.cycle.arm for r in rounds]
    fit_group(jobs, modules, arms, rounds[0].epochs, tmp / "group", callbacks=[probe])
    alone = []
    for i, (strategy, dense) in enumerate(zip(STRATEGIES, denses, strict=True)):
        p = Probe()
        job = tiny_job(seed=i, callbacks=[p])
        _, results = retrain(job, dense, strategy, 2, tmp / f"alone{i}")
        alone.append((p, results))
    return jobs, denses, plans, probe, fused_results, rounds, alone


def test_each_fused_arm_has_its_own_jobs_lr_at_every_step(fused_and_alone) -> None:
    jobs, _, _, probe, _, _, alone = fused_and_alone
    assert len(probe.lrs) == 2 * 2 * jobs[0].steps_per_epoch  # 2 rounds of 2 epochs
    for i, (p, _) in enumerate(alone):
        want = {step: torch.tensor(lr, dtype=torch.float32).item() for step, lr in p.lrs.items()}
        assert {step: lrs[i] for step, lrs in probe.lrs.items()} == want, STRATEGIES[i]


def test_fused_arms_prune_the_same_masks_and_measure_what_alone_they_measure(fused_and_alone) -> None:
    _, _, _, probe, fused_results, _, alone = fused_and_alone
    assert probe.violations == 0  # pruned weights and their momentum exactly 0, every arm, every step
    for i, (_, results) in enumerate(alone):
        fused = fused_results[i]
        assert [r.mask_digest for r in fused] == [r.mask_digest for r in results], STRATEGIES[i]
        for f, a in zip(fused, results, strict=True):
            assert f.steps == a.steps and f.epochs == a.epochs
            assert f.pruned == pytest.approx(a.pruned, rel=1e-4, abs=1e-5)
            assert f.retrained == pytest.approx(a.retrained, rel=1e-4, abs=1e-5)
        masks = [r.mask for r in fused]
        for earlier, later in itertools.pairwise(masks):  # masks only shrink
            assert all(not bool((later[n] & ~earlier[n]).any()) for n in earlier)


def test_the_fused_weight_rewinding_arm_starts_every_round_at_theta_T_minus_t_times_mask_bit_for_bit(
    fused_and_alone,
) -> None:
    jobs, denses, plans, probe, fused_results, _, _ = fused_and_alone
    wr = STRATEGIES.index("weight_rewind")
    rewind = denses[wr].state(plans[wr].rewind_step // jobs[wr].steps_per_epoch)
    for r, result in enumerate(fused_results[wr], start=1):
        state = probe.round_start[r][wr]
        for name, want in rewind.items():
            m = result.mask.get(name)
            expected = want * m if m is not None else want
            assert torch.equal(state[name], expected.to(state[name].dtype)), (r, name)
    ft = STRATEGIES.index("finetune")  # and fine-tuning's round 2 starts where its round 1 ended
    assert not torch.equal(probe.round_start[2][ft]["fc1.weight"], probe.round_start[1][ft]["fc1.weight"])


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping_clips_each_arm_as_its_own_job_would(algorithm: str) -> None:
    from prune_exp.fused.batches import FusedBatches
    from prune_exp.fused.module import FusedModule
    from prune_exp.lit.task import Task

    nets = [torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)) for _ in range(3)]
    stacked = StackedNets(nets)
    module = FusedModule(stacked, OPTIMIZERS["sgd"], Task.of(None, 2), FusedBatches([]))
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.01, 1.0, 100.0])  # one arm below the limit, two above it
    for p in stacked.holder.parameters():
        p.grad = torch.randn(p.shape, generator=g) * scale.view(-1, *([1] * (p.dim() - 1)))
    alone = [[p.grad[i].clone() for p in stacked.holder.parameters()] for i in range(3)]
    module.configure_gradient_clipping(None, 0.5, algorithm)  # type: ignore[arg-type]
    for i, grads in enumerate(alone):
        params = [torch.zeros_like(grad) for grad in grads]  # torch's clipping reads .grad of each
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(params, 0.5)
        else:
            torch.nn.utils.clip_grad_value_(params, 0.5)
        for p, want in zip(stacked.holder.parameters(), params, strict=True):
            torch.testing.assert_close(p.grad[i], want.grad)


@pytest.mark.parametrize(
    "kwargs", [{"kernel_size": 5, "stride": 2, "padding": 1}, {"kernel_size": 3, "dilation": 2, "padding": 2}]
)
def test_the_im2col_conv1d_of_stacked_arms_computes_torchs_convolution(kwargs: dict) -> None:
    from prune_exp.fused.conv import im2col_conv1d

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(3, 4, **kwargs)
    x = torch.randn(2, 3, 17, requires_grad=True)
    want = conv(x)
    want.sum().backward()
    grads = [x.grad.clone(), conv.weight.grad.clone()]
    x.grad, conv.weight.grad = None, None
    assert im2col_conv1d(conv) == 1
    got = conv(x)
    got.sum().backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close([x.grad, conv.weight.grad], grads)
    assert im2col_conv1d(torch.nn.Conv1d(4, 4, 3, groups=2)) == 0  # grouped: torch's own kernel
