"""Fused arms (prune_exp/fused): N jobs' rounds trained together, each arm exactly as alone.

Tolerances: a fused step runs every arm through batched kernels (vmap turns a Linear into
one bmm and a convolution into one grouped convolution over the arms), which sum the same
products in another order than the single-arm kernels; float32 addition is not associative,
so the weights agree to rounding (here within 1e-5 relative, 1e-6 absolute after a few
steps), not bit for bit. What does not go through a kernel is exact: masks, the LR of
every step, the weights placed at round start, the zeros at pruned positions."""

from __future__ import annotations

import copy
import csv
import itertools
import json
import logging
from pathlib import Path

import pytest
import torch
from helpers import job_config, tiny_dense, tiny_job
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file
from test_training import Probe, retrain

from prune_exp.columns import VOLATILE
from prune_exp.config import AdamConfig, SGDConfig
from prune_exp.fused.cycle import FusedCycle
from prune_exp.fused.group import fit_group
from prune_exp.fused.optim import build_stacked_optimizer
from prune_exp.fused.stack import StackedNets
from prune_exp.job.rounds import build_rounds, dense_module
from prune_exp.job.spine import run_job, run_jobs
from prune_exp.jobfiles import MASK_FILE, RETRAIN_LOG_DIR, WEIGHTS_FILE
from prune_exp.lit.callbacks import MaskEnforcer
from prune_exp.lit.module import build_optimizer
from prune_exp.logs import TRAIN_LOSS
from prune_exp.models.cnn1d import CNN1D
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Unstructured
from prune_exp.records import read_records
from prune_exp.retrain.strategies import plan_round, strategy_config
from prune_exp.run import experiment_of

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
            self.round_start[cycle.arms[0].round] = [{k: v[i].clone() for k, v in state.items()} for i in range(3)]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        cycle = next(c for c in trainer.callbacks if isinstance(c, FusedCycle))
        params = dict(pl_module.stacked.holder.named_parameters())
        opt = trainer.optimizers[0]
        for i, arm in enumerate(cycle.arms):
            for n, m in arm.mask.items():
                buf = opt.state.get(params[n], {}).get("momentum_buffer")
                self.violations += bool(params[n][i][~m].any()) + (buf is not None and bool(buf[i][~m].any()))


STRATEGIES = ("finetune", "weight_rewind", "lr_rewind")


@pytest.fixture(scope="module")
def fused_and_alone(tmp_path_factory):
    """Three arms (FT seed 0, WR seed 1, LRR seed 2) fused, and each of them alone with the
    Probe of test_training; both from the same dense runs."""
    tmp = tmp_path_factory.mktemp("fused")
    jobs = [tiny_job(seed=s) for s in range(3)]
    denses = [tiny_dense(job, tmp / "cache") for job in jobs]
    plans = [plan_round(strategy_config(s, budget=2), 4, jobs[0].steps_per_epoch) for s in STRATEGIES]
    fused_results: list[list] = [[] for _ in jobs]
    modules = [dense_module(job, dense) for job, dense in zip(jobs, denses, strict=True)]
    rounds = [
        build_rounds(
            job,
            dense,
            module,
            _pruner(module.net),
            plan=plan,
            finetune_lr=None,
            log_dir=tmp / f"arm{i}",
            on_round_end=fused_results[i].append,
        )
        for i, (job, dense, module, plan) in enumerate(zip(jobs, denses, modules, plans, strict=True))
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


SWEEP = ["debug=fast", "efficiency.measure_speed=false", "prune.schedule=iterative", "prune.rate=0.5"]
SWEEP += ["prune.sparsity=0.75"]


def _experiments(tmp: Path, data: Path, prefix: str, extra=()):
    return [
        experiment_of(job_config(tmp, data, [*SWEEP, *extra, f"retrain={s}", f"seed={i}"], job=f"{prefix}/{s}"))
        for i, s in enumerate(STRATEGIES)
    ]


def _epoch_log(job_dir: Path) -> list[dict[str, str]]:
    with open(job_dir / RETRAIN_LOG_DIR / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _records(tmp: Path, prefix: str) -> dict[str, list[dict]]:
    return {s: read_records(tmp / prefix / s / "records.jsonl") for s in STRATEGIES}


class SeesBatches(Callback):
    def on_fit_start(self, trainer, pl_module) -> None:
        self.shared = pl_module.batches._shared


def test_a_fused_group_writes_each_jobs_dir_as_alone_and_is_as_deterministic(tmp_path: Path, data_dir: Path) -> None:
    seen = SeesBatches()
    values = run_jobs(_experiments(tmp_path, data_dir, "fused", ["job_cache=false"]), tmp_path / "log", [seen])
    assert seen.shared is not None  # a real job's loaders take the one-index-op path (fused/batches.py)
    again = run_jobs(_experiments(tmp_path, data_dir, "again", ["job_cache=false"]), tmp_path / "log2")
    alone = [run_job(e) for e in _experiments(tmp_path, data_dir, "alone", ["job_cache=false"])]
    assert values == again and values == pytest.approx(alone, abs=1e-6)
    fused, rerun, single = _records(tmp_path, "fused"), _records(tmp_path, "again"), _records(tmp_path, "alone")
    skip = {*VOLATILE, "overrides", "dense_cached"}  # the first group trained the dense runs
    for s in STRATEGIES:
        assert [{k: v for k, v in r.items() if k not in skip} for r in fused[s]] == [
            {k: v for k, v in r.items() if k not in skip} for r in rerun[s]
        ], s  # the same seeds give identical records
        assert len({r["fused_group"] for r in fused[s]}) == 1 and fused[s][0]["fused_group"] is not None
        assert all(r["fused_group"] is None for r in single[s])
        assert [r["mask_sha256"] for r in fused[s]] == [r["mask_sha256"] for r in single[s]]
        for f, a in zip(fused[s], single[s], strict=True):
            assert f["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)
        status = json.loads((tmp_path / "fused" / s / "status.json").read_text())
        assert status["state"] == "done"
        files = {f.relative_to(tmp_path / "fused" / s) for f in (tmp_path / "fused" / s).rglob("*")}
        assert files == {f.relative_to(tmp_path / "alone" / s) for f in (tmp_path / "alone" / s).rglob("*")}
        # the per-epoch log: the same epochs, steps and train loss; validation at round ends only
        fused_log, alone_log = (_epoch_log(tmp_path / d / s) for d in ("fused", "alone"))
        assert [(r["epoch"], r["step"]) for r in fused_log] == [(r["epoch"], r["step"]) for r in alone_log]
        assert [float(r[TRAIN_LOSS]) for r in fused_log] == pytest.approx(
            [float(r[TRAIN_LOSS]) for r in alone_log], rel=1e-4
        )
        mask = Mask.load(tmp_path / "fused" / s / MASK_FILE)
        assert mask == Mask.load(tmp_path / "alone" / s / MASK_FILE)
        weights = load_file(tmp_path / "fused" / s / WEIGHTS_FILE)
        assert all(not bool(weights[n][~m].any()) for n, m in mask.items())
    # a finished group is done: run again in the same dirs, nothing trains and the values stand
    assert run_jobs(_experiments(tmp_path, data_dir, "fused", ["job_cache=false"]), tmp_path / "log") == values


def test_conv2d_networks_on_cpu_train_one_after_another_and_the_log_says_why(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conv2d = ["job_cache=false", "data=digits", "model=conv2", "model.channels=[4,4]", "model.hidden=[8]"]
    exps = _experiments(tmp_path, data_dir, "conv2d", conv2d)
    with caplog.at_level(logging.INFO, logger="prune_exp"):
        values = run_jobs(exps[:2], tmp_path / "log")
    assert "on CPU, N arms' 2-D/3-D convolutions" in caplog.text and len(values) == 2
    for s in STRATEGIES[:2]:
        assert all(r["fused_group"] is None for r in read_records(tmp_path / "conv2d" / s / "records.jsonl"))


def test_a_failing_group_fails_every_arm_and_an_arm_that_fails_alone_fails_alone(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RuntimeError, match="killed"):  # the stacked training fails: every arm with it
        run_jobs(_experiments(tmp_path, data_dir, "boom", ["job_cache=false"]), tmp_path / "log", [Boom(1)])
    for s in STRATEGIES:
        status = json.loads((tmp_path / "boom" / s / "status.json").read_text())
        assert status["state"] == "failed" and "killed" in status["error"], s
    import prune_exp.job.spine as spine

    exps, real = _experiments(tmp_path, data_dir, "late", ["job_cache=false"]), spine.finish

    def finish(arm):  # the second arm's artifacts cannot be written, once all arms have trained
        if arm.job is exps[1]:
            raise RuntimeError("disk on fire")
        return real(arm)

    monkeypatch.setattr(spine, "finish", finish)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_jobs(exps, tmp_path / "log2")
    states = [json.loads((tmp_path / "late" / s / "status.json").read_text()) for s in STRATEGIES]
    assert states[0]["state"] == "done" and states[0]["value"] == exps[0].status.value  # finished before
    assert all(st["state"] == "failed" and "disk on fire" in st["error"] for st in states[1:])


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping_clips_each_arm_as_its_own_job_would(algorithm: str) -> None:
    from prune_exp.fused.batches import FusedBatches
    from prune_exp.fused.module import FusedModule
    from prune_exp.task import Task

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


class Boom(Callback):
    """Fails the fit at the start of ``epoch`` (after the previous epoch's checkpoint), or with
    ``at_end`` at its end (after its log rows, before its checkpoint)."""

    def __init__(self, epoch: int, at_end: bool = False) -> None:
        self.epoch, self.at_end = epoch, at_end

    def _boom(self, trainer, at_end: bool) -> None:
        if trainer.current_epoch == self.epoch and at_end == self.at_end:
            raise RuntimeError("killed")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._boom(trainer, at_end=False)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._boom(trainer, at_end=True)


KILLED = ["job_cache=false", "trainer.checkpoint_every_s=0", "retrain.budget=2"]


def _run_cut(tmp: Path, data: Path, boom: Boom) -> None:
    """The killed jobs run again in ``cut/``, with the group's checkpoint in ``cut_log``."""
    run_jobs(_experiments(tmp, data, "cut", KILLED), tmp / "cut_log", callbacks=[boom])


def _kill(tmp: Path, data: Path, boom: Boom) -> None:
    """The jobs trained whole (in ``whole/``), then again in ``cut/`` until ``boom`` kills them."""
    run_jobs(_experiments(tmp, data, "whole", KILLED), tmp / "whole_log")
    with pytest.raises(RuntimeError, match="killed"):
        _run_cut(tmp, data, boom)


def _assert_cut_like_whole(tmp: Path) -> None:
    """Each arm's records (but their volatile columns) and epoch log, as the uninterrupted run's."""
    skip = {*VOLATILE, "overrides", "dense_cached"}
    whole, cut = _records(tmp, "whole"), _records(tmp, "cut")
    for s in STRATEGIES:
        assert [r["round"] for r in cut[s]] == [0, 1, 2]
        assert [{k: v for k, v in r.items() if k not in skip} for r in cut[s]] == [
            {k: v for k, v in r.items() if k not in skip} for r in whole[s]
        ], s
        assert _epoch_log(tmp / "cut" / s) == _epoch_log(tmp / "whole" / s), s  # each arm's log


def test_a_fused_group_killed_between_an_epochs_log_and_its_checkpoint_logs_every_epoch_once(
    tmp_path: Path, data_dir: Path
) -> None:
    _kill(tmp_path, data_dir, Boom(2, at_end=True))
    for s in STRATEGIES:  # epoch 2's row reached the log (the failed fit flushes it); its checkpoint did not
        assert [int(r["epoch"]) for r in _epoch_log(tmp_path / "cut" / s)] == [0, 1, 2], s
    _run_cut(tmp_path, data_dir, Boom(1))  # resumed after epoch 1: epoch 2 trained and logged again, once
    _assert_cut_like_whole(tmp_path)


def test_a_fused_group_killed_mid_run_resumes_to_the_records_of_an_uninterrupted_one(
    tmp_path: Path, data_dir: Path
) -> None:
    _kill(tmp_path, data_dir, Boom(3))
    for s in STRATEGIES:  # killed in round 2: round 1's rows are there, the statuses say failed
        assert json.loads((tmp_path / "cut" / s / "status.json").read_text())["state"] == "failed"
        assert [r["round"] for r in read_records(tmp_path / "cut" / s / "records.jsonl")] == [0, 1]
    assert len(list((tmp_path / "cut_log").glob("*/resume.ckpt"))) == 1
    # resumed at epoch 3: a fit that started again from any earlier epoch would fail at epoch 2
    _run_cut(tmp_path, data_dir, Boom(2))
    _assert_cut_like_whole(tmp_path)
    assert not list((tmp_path / "cut_log").glob("*/resume.ckpt"))  # the finished group keeps no checkpoint
