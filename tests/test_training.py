"""What happens during training, checked with probes on a real (tiny) Lightning run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from helpers import tiny_dense, tiny_job
from lightning.pytorch.callbacks import Callback

from prune_exp.config import AdamConfig, ConstantScheduleConfig, RetrainConfig
from prune_exp.job.dense import replay_dense
from prune_exp.job.rounds import build_rounds, dense_module, fit_rounds
from prune_exp.lit.callbacks import RoundResult
from prune_exp.lit.trainer import Job
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.pruner import Pruner, sparsity_schedule
from prune_exp.pruning.structure import Channel, Unstructured
from prune_exp.retrain.lr import StrategyLR
from prune_exp.retrain.schedules import LRSchedule
from prune_exp.retrain.strategies import plan_round, strategy_config
from prune_exp.store.dense_cache import DenseRun


class Probe(Callback):
    """Records the LR of every optimizer step, the state at every epoch start, and checks after
    every step that the pruned weights (per the cycle's current mask) are exactly zero."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}
        self.epoch_start_states: dict[int, dict[str, torch.Tensor]] = {}
        self.cycle = None
        self.violations = 0
        self.momentum_violations = 0
        self.state_sizes_at_epoch_start: dict[int, int] = {}
        self.step_states: dict[int, dict[str, torch.Tensor]] = {}  # after each step, by global step

    def on_fit_start(self, trainer, pl_module) -> None:
        from prune_exp.lit.cycle import PruneRetrainCycle

        self.cycle = next((c for c in trainer.callbacks if isinstance(c, PruneRetrainCycle)), None)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_start_states[trainer.current_epoch] = {
            k: v.detach().clone() for k, v in pl_module.net.state_dict().items()
        }
        self.state_sizes_at_epoch_start[trainer.current_epoch] = len(trainer.optimizers[0].state)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs[trainer.global_step] = optimizer.param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step_states[trainer.global_step] = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
        if self.cycle is None:
            return
        params = dict(pl_module.net.named_parameters())
        opt = trainer.optimizers[0]
        for n, m in self.cycle.mask.items():
            if not torch.equal(params[n][~m], torch.zeros_like(params[n][~m])):
                self.violations += 1
            buf = opt.state.get(params[n], {}).get("momentum_buffer")
            if buf is not None and bool(buf[~m].any()):
                self.momentum_violations += 1


def retrain(
    job: Job,
    dense: DenseRun,
    strategy: str | RetrainConfig,
    budget: int,
    tmp_path: Path,
    *,
    sparsities=(0.5, 0.75),
    structure=None,
    finetune_lr: float | None = None,
) -> tuple[Pruner, list[RoundResult]]:
    rt = strategy_config(strategy, budget=budget) if isinstance(strategy, str) else strategy
    if finetune_lr is not None:
        rt = dataclasses.replace(rt, finetune_lr=finetune_lr)
    plan = plan_round(rt, dense.epochs, job.steps_per_epoch)

    module = dense_module(job, dense)
    pruner = Pruner(
        module.net,
        criterion=Magnitude(),
        structure=structure or Unstructured(),
        scope="global",
        sparsities=list(sparsities),
    )
    results: list[RoundResult] = []
    rounds = build_rounds(
        job,
        dense,
        module,
        pruner,
        plan=plan,
        lr=StrategyLR.of(rt, plan, job.schedule, job.steps_per_epoch),
        log_dir=tmp_path / "log",
        on_round_end=results.append,
    )
    mask = fit_rounds(job, rounds, log_dir=tmp_path / "log")
    assert mask == results[-1].mask
    return rounds.pruner, results


@pytest.fixture
def dense_probe_and_run(tmp_path):
    probe = Probe()
    job = tiny_job(T=4, milestones=(2, 3), callbacks=[probe])
    dense = tiny_dense(job, tmp_path / "cache")
    return job, dense, probe


def test_dense_run_keeps_every_epoch_and_follows_the_schedule(dense_probe_and_run) -> None:
    job, dense, probe = dense_probe_and_run
    spe = job.steps_per_epoch
    assert dense.saved_epochs == {0, 1, 2, 3, 4}
    assert len(probe.lrs) == 4 * spe == dense.meta["steps"]
    assert all(probe.lrs[g] == job.schedule(g / spe) for g in probe.lrs)
    assert [probe.lrs[0], probe.lrs[2 * spe], probe.lrs[3 * spe]] == pytest.approx([0.1, 0.01, 0.001])
    # epoch files hold the weights at the start of each epoch
    for e in range(4):
        for k, v in probe.epoch_start_states[e].items():
            assert torch.equal(dense.state(e)[k], v), (e, k)


def test_weight_rewinding_starts_every_round_at_theta_T_minus_t_times_mask_bit_for_bit(
    dense_probe_and_run, tmp_path
) -> None:
    job, dense, dense_probe = dense_probe_and_run
    probe = Probe()
    job.callbacks = [probe]
    t, spe = 2, job.steps_per_epoch
    _pruner, results = retrain(job, dense, "weight_rewind", t, tmp_path)
    theta = dense.state(dense.epochs - t)
    for r, res in enumerate(results):
        start = probe.epoch_start_states[r * t]
        for k, v in theta.items():
            expected = torch.where(res.mask[k], v, torch.zeros_like(v)) if k in res.mask else v
            assert torch.equal(start[k], expected), (r, k)  # buffers (BN stats) are rewound too
        # the LR at every step equals the dense run's LR at the same position
        origin = r * t * spe
        for i in range(t * spe):
            assert probe.lrs[origin + i] == dense_probe.lrs[(dense.epochs - t) * spe + i]
    assert probe.violations == 0


def test_replaying_the_dense_run_gives_its_weights_bit_for_bit(dense_probe_and_run, tmp_path) -> None:
    job, dense, dense_probe = dense_probe_and_run
    job.callbacks = []
    spe = job.steps_per_epoch
    for step in (2 * spe, spe + 3):  # an epoch file to compare with, and a step inside epoch 1
        state = replay_dense(job, dense, step, tmp_path / f"replay{step}")
        expected = dense.state(2) if step == 2 * spe else dense_probe.step_states[step]
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in state), step


def test_late_resetting_rewinds_to_an_iteration_and_replays_the_lr_from_there(dense_probe_and_run, tmp_path) -> None:
    """rewind_to: Nit inside epoch 1, the LR replayed from iteration N, a budget of T."""
    job, dense, dense_probe = dense_probe_and_run
    probe = Probe()
    job.callbacks = [probe]
    T, spe = dense.epochs, job.steps_per_epoch
    k = spe + 3
    rt = strategy_config("weight_rewind", rewind_to=f"{k}it", lr_from=f"{k}it", duration="full", budget=1)
    _, results = retrain(job, dense, rt, 1, tmp_path)
    assert [r.epochs for r in results] == [T, T]
    theta_k = dense_probe.step_states[k]
    for r, res in enumerate(results):
        start = probe.epoch_start_states[r * T]
        for key, v in theta_k.items():
            expected = torch.where(res.mask[key], v, torch.zeros_like(v)) if key in res.mask else v
            assert torch.equal(start[key], expected), (r, key)
        lrs = [probe.lrs[r * T * spe + i] for i in range(T * spe)]
        assert lrs == [job.schedule((k + i) / spe) for i in range(T * spe)]  # past T: the final LR
    assert probe.violations == 0


def test_lr_rewinding_keeps_the_weights_and_replays_the_dense_lr(dense_probe_and_run, tmp_path) -> None:
    job, dense, dense_probe = dense_probe_and_run
    probe = Probe()
    job.callbacks = [probe]
    t, spe = 3, job.steps_per_epoch
    _pruner, results = retrain(job, dense, "lr_rewind", t, tmp_path)
    final = dense.state(dense.epochs)
    first = probe.epoch_start_states[0]
    for k, v in final.items():  # round 1 starts from theta_T * m, not from a rewound point
        m = results[0].mask.get(k)
        assert torch.equal(first[k], v if m is None else torch.where(m, v, torch.zeros_like(v))), k
    for r in range(2):
        for i in range(t * spe):
            assert probe.lrs[r * t * spe + i] == dense_probe.lrs[(dense.epochs - t) * spe + i]


def test_finetuning_uses_the_dense_runs_last_lr_or_the_configured_one(dense_probe_and_run, tmp_path) -> None:
    job, dense, dense_probe = dense_probe_and_run
    probe = Probe()
    job.callbacks = [probe]
    retrain(job, dense, "finetune", 2, tmp_path)
    assert set(probe.lrs.values()) == {dense_probe.lrs[max(dense_probe.lrs)]}
    probe2 = Probe()
    job.callbacks = [probe2]
    retrain(job, dense, "finetune", 2, tmp_path / "b", finetune_lr=0.0123)
    assert set(probe2.lrs.values()) == {0.0123}


def test_every_round_spends_the_same_budget_and_resets_the_optimizer(dense_probe_and_run, tmp_path) -> None:
    job, dense, _ = dense_probe_and_run
    probe = Probe()
    job.callbacks = [probe]
    _, results = retrain(job, dense, "lr_rewind", 2, tmp_path, sparsities=sparsity_schedule(0.9, "iterative", 0.5))
    assert [r.epochs for r in results] == [2, 2, 2, 2]
    assert {r.steps for r in results} == {2 * job.steps_per_epoch}
    # at each round start the optimizer has no state; mid-round it does
    assert [probe.state_sizes_at_epoch_start[e] for e in (0, 2, 4, 6)] == [0, 0, 0, 0]
    assert probe.state_sizes_at_epoch_start[1] > 0


def test_pruned_weights_stay_exactly_zero_under_sgd_momentum_and_weight_decay(tmp_path) -> None:
    job = tiny_job(T=4, lr=0.5)  # a large LR: any leak through momentum or decay would show
    dense = tiny_dense(job, tmp_path / "cache")
    probe = Probe()
    job.callbacks = [probe]
    pruner, results = retrain(job, dense, "finetune", 6, tmp_path, sparsities=[0.6, 0.9], finetune_lr=0.5)
    assert probe.violations == 0 and probe.momentum_violations == 0
    assert results[-1].mask.sparsity(pruner.prunable_names) == pytest.approx(0.9, abs=1e-3)


def test_pruned_weights_stay_exactly_zero_under_adam(tmp_path) -> None:
    job = tiny_job(T=3)
    job.optim = AdamConfig(lr=0.01, weight_decay=1e-3, schedule=ConstantScheduleConfig())
    job.schedule = LRSchedule(0.01, 3, job.optim.schedule)
    dense = tiny_dense(job, tmp_path / "cache")
    probe = Probe()
    job.callbacks = [probe]
    retrain(job, dense, "lr_rewind", 3, tmp_path)
    assert probe.violations == 0


def test_channel_pruning_keeps_whole_filters_zero_through_training(dense_probe_and_run, tmp_path) -> None:
    job, dense, _ = dense_probe_and_run
    probe = Probe()
    job.callbacks = [probe]
    _pruner, results = retrain(job, dense, "finetune", 2, tmp_path, structure=Channel(), sparsities=[0.5])
    mask = results[-1].mask
    assert "fc1.bias" in mask and "bn1.weight" in mask and "bn1.bias" in mask
    assert probe.violations == 0


def test_lottery_starts_from_theta_0_and_trains_the_full_schedule(dense_probe_and_run, tmp_path) -> None:
    job, dense, dense_probe = dense_probe_and_run
    probe = Probe()
    job.callbacks = [probe]
    _, results = retrain(job, dense, "lottery", 1, tmp_path)
    T, spe = dense.epochs, job.steps_per_epoch
    assert [r.epochs for r in results] == [T, T]
    theta0 = dense.state(0)
    for r, res in enumerate(results):
        start = probe.epoch_start_states[r * T]
        for k in res.mask:
            assert torch.equal(start[k], torch.where(res.mask[k], theta0[k], torch.zeros_like(theta0[k])))
        assert [probe.lrs[r * T * spe + i] for i in range(T * spe)] == [dense_probe.lrs[i] for i in range(T * spe)]


def test_reinit_draws_a_fresh_masked_init_each_round(dense_probe_and_run, tmp_path) -> None:
    job, dense, _ = dense_probe_and_run
    probe = Probe()
    job.callbacks = [probe]
    _, results = retrain(job, dense, "reinit", 1, tmp_path)
    T = dense.epochs
    s0, s1 = probe.epoch_start_states[0], probe.epoch_start_states[T]
    theta0 = dense.state(0)
    w = "fc1.weight"
    assert not torch.equal(s0[w], torch.where(results[0].mask[w], theta0[w], torch.zeros_like(theta0[w])))
    assert not torch.equal(s0[w] * results[1].mask[w], s1[w])
    assert torch.equal(s1[w][~results[1].mask[w]], torch.zeros(int((~results[1].mask[w]).sum())))


def test_no_retraining_measures_the_pruned_dense_weights(dense_probe_and_run, tmp_path) -> None:
    job, dense, _ = dense_probe_and_run
    _, results = retrain(job, dense, "none", 1, tmp_path)
    assert [(r.epochs, r.steps) for r in results] == [(0, 0), (0, 0)]
    assert all(r.pruned == r.retrained for r in results)  # nothing happens between the two


def test_dense_run_is_deterministic_for_a_seed(tmp_path) -> None:
    a = tiny_dense(tiny_job(seed=1), tmp_path / "a")
    b = tiny_dense(tiny_job(seed=1), tmp_path / "b")
    c = tiny_dense(tiny_job(seed=2), tmp_path / "c")
    sa, sb, sc = a.state(4), b.state(4), c.state(4)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fc1.weight"], sc["fc1.weight"])
    pl.seed_everything(0, verbose=False)
