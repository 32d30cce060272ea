"""The LR vocabulary (retrain/lr.py) on a real Lightning run: every shape, warmup and anchor sets
the formula's LR at every step; a rule's peak survives a resume; refusals name the key."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from helpers import tiny_dense, tiny_job
from lightning.pytorch.callbacks import Callback

from prune_exp.config import ConfigError, RetrainConfig
from prune_exp.job.rounds import build_rounds, dense_module, fit_rounds
from prune_exp.lit.callbacks import RoundResult
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Unstructured
from prune_exp.retrain.lr import StrategyLR
from prune_exp.retrain.strategies import plan_round

T, BUDGET = 4, 2  # tiny_job: LR 0.1, x0.1 at epochs 2 and 3: the dense LRs are 0.1, 0.01, 0.001


class LRProbe(Callback):
    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs[trainer.global_step] = optimizer.param_groups[0]["lr"]


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """The dense run, and the LR of each of its steps as a probe saw them."""
    probe = LRProbe()
    job = tiny_job(T=T, callbacks=[probe])
    run = tiny_dense(job, tmp_path_factory.mktemp("cache"))
    return job, run, [probe.lrs[s] for s in sorted(probe.lrs)]


def retrain_lrs(dense, tmp_path: Path, **lr_keys) -> tuple[list[list[float]], list[RoundResult], int]:
    """The LR of every step of each of two rounds retrained with these retrain.lr* keys."""
    job, run, _ = dense
    probe = LRProbe()
    job = dataclasses.replace(job, callbacks=[probe])
    rt = RetrainConfig(strategy="mine", budget=BUDGET, **lr_keys)
    plan = plan_round(rt, T, job.steps_per_epoch)
    module = dense_module(job, run)
    pruner = Pruner(module.net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=[0.5, 0.75])
    results: list[RoundResult] = []
    lr = StrategyLR.of(rt, plan, job.schedule, job.steps_per_epoch)
    rounds = build_rounds(
        job, run, module, pruner, plan=plan, lr=lr, log_dir=tmp_path / "log", on_round_end=results.append
    )
    fit_rounds(job, rounds, log_dir=tmp_path / "log")
    n = BUDGET * job.steps_per_epoch
    steps = sorted(probe.lrs)
    assert steps == list(range(2 * n))
    return [[probe.lrs[r * n + i] for i in range(n)] for r in range(2)], results, n


# The formulas, written out here from retrain/lr.py's table (not its code); d: the dense LRs.
def warmup(first: float, i: int, w: int, shape: str) -> float:
    return first * (i / w if shape == "linear" else (1 - math.cos(math.pi * i / w)) / 2)


def expected(d: list[float], n: int, shape: str, peak=0.0, end=0.0, warm=0.0, wshape="linear", start=0) -> list[float]:
    N, m, w = len(d), n - math.floor(warm * n), math.floor(warm * n)
    anchor = {"max": max(d), "min": min(d), "last": d[-1]}  # (this dense run has no warmup of its own)
    peak, end = anchor.get(peak, peak), anchor.get(end, end)

    def main(j: int) -> float:
        p = j / m
        return {
            "constant": lambda: peak,
            "replay": lambda: d[min(start + j, N - 1)],
            "scaled": lambda: d[j * N // m] * (peak / max(d)),
            "cosine": lambda: end + (peak - end) * (1 + math.cos(math.pi * p)) / 2,
            "linear": lambda: peak + (end - peak) * p,
        }[shape]()

    return [warmup(main(0), i, w, wshape) if i < w else main(i - w) for i in range(n)]


CASES = {  # id: (the retrain keys, the formula's arguments but d and n)
    "constant-value": ({"lr": "constant", "lr_peak": 0.03}, {"shape": "constant", "peak": 0.03}),
    "constant-max-cosine-warmup": (
        {"lr": "constant", "lr_peak": "max", "lr_warmup": 0.25, "lr_warmup_shape": "cosine"},
        {"shape": "constant", "peak": "max", "warm": 0.25, "wshape": "cosine"},
    ),
    "replay-linear-warmup": (
        {"lr": "replay", "lr_from": "T-t", "lr_warmup": 0.25},
        {"shape": "replay", "warm": 0.25, "start": (T - BUDGET) * 7},  # tiny_job: 7 steps per epoch
    ),
    "scaled-max": ({"lr": "scaled", "lr_peak": "max"}, {"shape": "scaled", "peak": "max"}),
    "scaled-value-cosine-warmup": (
        {"lr": "scaled", "lr_peak": 0.05, "lr_warmup": 0.1, "lr_warmup_shape": "cosine"},
        {"shape": "scaled", "peak": 0.05, "warm": 0.1, "wshape": "cosine"},
    ),
    "cosine-max-to-min": (
        {"lr": "cosine", "lr_peak": "max", "lr_end": "min", "lr_warmup": 0.25, "lr_warmup_shape": "cosine"},
        {"shape": "cosine", "peak": "max", "end": "min", "warm": 0.25, "wshape": "cosine"},
    ),
    "linear-last-to-0": ({"lr": "linear", "lr_peak": "last"}, {"shape": "linear", "peak": "last"}),
    "linear-value-to-last": (
        {"lr": "linear", "lr_peak": 0.05, "lr_end": "last", "lr_warmup": 0.5},
        {"shape": "linear", "peak": 0.05, "end": "last", "warm": 0.5},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_shape_warmup_and_anchor_sets_the_formulas_lr_at_every_step(dense, tmp_path: Path, case: str) -> None:
    keys, formula = CASES[case]
    lrs, results, n = retrain_lrs(dense, tmp_path, **keys)
    d = dense[2]
    assert (max(d), min(d), n) == (0.1, pytest.approx(0.001), BUDGET * 7)
    for round_lrs in lrs:  # every round the same: the LR is a function of the step within the round
        assert round_lrs == expected(d, n, **formula), case
    for result, round_lrs in zip(results, lrs, strict=True):  # the records' LR columns
        want = {"lr_start": round_lrs[0], "lr_peak": max(round_lrs), "lr_end": round_lrs[-1]}
        assert {k: result.diagnostics[k] for k in want} == want


def test_the_fine_tuning_default_is_finetune_lr_else_the_dense_runs_last_lr(dense, tmp_path: Path) -> None:
    lrs, _, _ = retrain_lrs(dense, tmp_path / "a")
    assert set(lrs[0] + lrs[1]) == {dense[2][-1]}
    lrs, _, _ = retrain_lrs(dense, tmp_path / "b", finetune_lr=0.02)
    assert set(lrs[0] + lrs[1]) == {0.02}


def test_an_end_above_the_peak_is_refused_naming_the_key(dense) -> None:
    job = dense[0]
    rt = RetrainConfig(strategy="mine", budget=BUDGET, lr="linear", lr_peak="min", lr_end="max")
    with pytest.raises(ConfigError, match=r"retrain\.lr_end='max' is not allowed; allowed: at most retrain\.lr_peak"):
        StrategyLR.of(rt, plan_round(rt, T, job.steps_per_epoch), job.schedule, job.steps_per_epoch)


def test_a_rules_peak_is_part_of_the_rounds_state(dense, tmp_path: Path) -> None:
    """A round resumed from its state (the stage's checkpoint) keeps the rule's peak and LRs."""
    job, run, _ = dense
    rt = RetrainConfig(
        strategy="allr", budget=BUDGET, lr="linear", lr_warmup=0.1, lr_rule={"_target_": "prune_exp.retrain.rules.ALLR"}
    )
    plan = plan_round(rt, T, job.steps_per_epoch)

    def arm():
        module = dense_module(job, run)
        pruner = Pruner(module.net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=[0.5])
        lr = StrategyLR.of(rt, plan, job.schedule, job.steps_per_epoch)
        stage = build_rounds(
            job, run, module, pruner, plan=plan, lr=lr, log_dir=tmp_path / "log", on_round_end=lambda r: None
        )
        return stage.cycle.arm

    first = arm()
    first.begin_round(7)
    second = arm()
    second.load_state_dict(first.state_dict())
    steps = range(7, 7 + BUDGET * job.steps_per_epoch)
    assert [second.lr(g) for g in steps] == [first.lr(g) for g in steps]
    assert second._peak == first._peak is not None and 0 < first._peak <= 0.1
    assert second._diagnostics == first._diagnostics and "lr_rule" in first._diagnostics
    assert all(torch.equal(second.mask[k], first.mask[k]) for k in first.mask)


def test_a_rule_with_gradual_pruning_is_refused_in_the_preflight(tmp_path: Path) -> None:
    from helpers import composed

    from prune_exp.app.preflight import check_job

    overrides = ["debug=fast", "retrain=allr", "prune.schedule=gradual", "prune.rate=0.5", "prune.sparsity=0.75"]
    with composed([*overrides, f"paths.data_dir={tmp_path}", f"paths.root_dir={tmp_path}"], hydra=True) as cfg:
        with pytest.raises(ConfigError, match=r"retrain\.lr_rule=.* is not allowed with prune\.schedule=gradual"):
            check_job(cfg)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"low": "foo"}, r"retrain\.lr_rule\.low='foo' .*one of max, min, last or a number > 0"),
        ({"low": 0}, r"retrain\.lr_rule\.low=0 "),
        ({"steepness": 0}, r"retrain\.lr_rule\.steepness=0 .*a number > 0"),
        ({"midpoint": float("nan")}, r"retrain\.lr_rule\.midpoint=nan .*a finite number"),
    ],
)
def test_a_rules_bad_arguments_are_refused_when_the_plan_is_made(dense, rule: dict, message: str) -> None:
    job = dense[0]
    rt = RetrainConfig(
        strategy="s", budget=BUDGET, lr="linear", lr_rule={"_target_": "prune_exp.retrain.rules.SCyc", **rule}
    )
    with pytest.raises(ConfigError, match=message):
        StrategyLR.of(rt, plan_round(rt, T, job.steps_per_epoch), job.schedule, job.steps_per_epoch)


def test_a_library_lr_for_a_strategy_with_its_own_lr_shape_is_refused(dense, tmp_path: Path) -> None:
    """A float or a schedule is a constant or a replayed LR: LLR's shape would be dropped silently."""
    from prune_exp.retrain.strategies import strategy_config

    job, run, _ = dense
    rt = strategy_config("llr", budget=BUDGET)
    plan = plan_round(rt, T, job.steps_per_epoch)
    module = dense_module(job, run)
    pruner = Pruner(module.net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=[0.5])
    kwargs = {"log_dir": tmp_path, "on_round_end": lambda r: None}
    with pytest.raises(ValueError, match=r"strategy llr has lr=linear; pass lr=StrategyLR\.of"):
        build_rounds(job, run, module, pruner, plan=plan, lr=job.schedule, **kwargs)
