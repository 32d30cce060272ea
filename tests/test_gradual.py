"""Gradual magnitude pruning (prune.schedule=gradual): the cubic ramp exactly, the cycle that
follows it (updates, rows at the iterative levels, LR and optimizer resets per round, resume),
and a real sweep that reports it next to the iterative arms at an equal budget."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import composed, run_in_process, tiny_net

from prune_exp.app.run import to_run_config
from prune_exp.config import ConfigError
from prune_exp.job.plan import JobPlan
from prune_exp.lit.callbacks import MaskEnforcer, RoundResult
from prune_exp.lit.cycle import OneNet, RoundCycle
from prune_exp.lit.gradual import GradualRounds
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.gradual import GradualPlan, cubic_sparsity
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner, sparsity_schedule
from prune_exp.pruning.structure import Unstructured
from prune_exp.retrain.strategies import RoundPlan
from prune_exp.store.records import read_records

LEVELS = (0.2, 0.36, 0.4)  # sparsity_schedule(0.4, "iterative", 0.2)
PLAN = GradualPlan(LEVELS, steps_per_round=10, every=3)  # the ramp: the first 20 of 30 steps


def test_the_levels_are_the_iterative_schedules() -> None:
    assert sparsity_schedule(0.4, "gradual", 0.2) == pytest.approx(list(LEVELS))
    assert sparsity_schedule(0.4, "gradual", 0.2) == sparsity_schedule(0.4, "iterative", 0.2)


def test_the_cubic_ramp_at_every_update() -> None:
    assert PLAN.total_steps == 30 and PLAN.ramp_steps == 20
    assert PLAN.update_steps == (0, 3, 6, 9, 12, 15, 18, 20)
    expected = [0.4 * (1 - (1 - u / 20) ** 3) for u in (0, 3, 6, 9, 12, 15, 18, 20)]
    assert PLAN.sparsities == pytest.approx(expected, abs=0, rel=1e-15)
    assert PLAN.sparsities[0] == 0.0 and PLAN.sparsities[-1] == 0.4  # from s_i = 0 to the target exactly
    # 0.2 is first reached at step 6 (0.2628), 0.36 at step 12 (0.3744), 0.4 at the ramp's end
    assert PLAN.reached_at == (2, 4, 7)
    assert PLAN.record_steps == (9, 15, 30)  # the next update's step; the last level at the run's end
    assert cubic_sparsity(25, 20, 0.5) == 0.5 and cubic_sparsity(0, 0, 0.9) == 0.9
    one = GradualPlan((0.9,), steps_per_round=7, every=3)  # one round: one-shot at step 0
    assert (one.update_steps, one.sparsities, one.record_steps) == ((0,), (0.9,), (7,))


def test_prune_every_leaves_two_updates_or_more_on_the_ramp() -> None:
    """Zhu & Gupta's ramp is n updates of Δt: with Δt over half the ramp n = 1, one-shot pruning."""
    assert GradualPlan(LEVELS, steps_per_round=10, every=10).update_steps == (0, 10, 20)  # n = 2: the longest Δt
    assert GradualPlan(LEVELS, steps_per_round=10, every=1).update_steps == tuple(range(21))
    for every in (11, 19, 20, 100):  # 20: the ramp's length, one update from 0 to the target
        message = (
            rf"prune\.every={every} is not allowed with prune\.schedule=gradual: its cubic ramp is 20 steps \(the "
            r"first 2 of 3 rounds of 10 steps\), .*; allowed: an integer in \[1, 10\] "
        )
        with pytest.raises(ConfigError, match=message):
            GradualPlan(LEVELS, steps_per_round=10, every=every)
    assert GradualPlan((0.9,), steps_per_round=7, every=100).update_steps == (0,)  # one round: no ramp to fit
    with pytest.raises(ConfigError, match=r"ramp is 1 steps .*; allowed: none: a ramp of 1 step has room"):
        GradualPlan((0.2, 0.4), steps_per_round=1, every=1)


def test_the_preflight_check_says_where_the_ramps_steps_come_from() -> None:
    with composed(["debug=fast", "prune.schedule=gradual"]) as cfg:
        rc = to_run_config(cfg, resolve_paths=False)
    with pytest.raises(ConfigError) as e:
        JobPlan.of(rc, steps_per_epoch=6)  # debug=fast's data: 6 steps per epoch, T = 2
    assert str(e.value) == (
        "prune.every=100 is not allowed with prune.schedule=gradual: its cubic ramp is 18 steps (the first 3 of 4 "
        "rounds of 6 steps: prune.rate=0.2 takes 4 rounds to prune.sparsity=0.5, each of retrain.budget=1 epochs "
        "of 6 steps), so one update of 100 steps fits on it and the mask jumps to the target (or past 87.5% of it) "
        "at once; allowed: an integer in [1, 9] (two updates or more on the ramp: Zhu & Gupta's n >= 2), or a "
        "longer ramp (retrain.budget)"
    )
    rc.prune.every = 9
    JobPlan.of(rc, steps_per_epoch=6)
    rc.prune.every, rc.retrain.budget = 18, 2  # a longer ramp: 3 rounds of 12 steps
    JobPlan.of(rc, steps_per_epoch=6)
    rc.prune.schedule = "iterative"  # prune.every is gradual's alone
    rc.prune.every = 10**6
    JobPlan.of(rc, steps_per_epoch=6)


def cycle_for(plan: GradualPlan, net: torch.nn.Module, log: list) -> tuple[GradualRounds, list[RoundResult]]:
    pruner = Pruner(net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=plan.sparsities)
    results: list[RoundResult] = []
    calls = iter(range(1000))
    cycle = GradualRounds(
        gradual=plan,
        net=net,
        pruner=pruner,
        plan=RoundPlan("finetune", 1, "current", None, "constant", 0),
        enforcer=MaskEnforcer(net),
        evaluate=lambda: {"call": next(calls)},  # says when each measurement was taken
        round_start_weights=lambda r: None,
        lr=0.05,
        steps_per_epoch=10,
        on_round_end=results.append,
    )
    return cycle, results


def prunable_sparsity(mask: Mask, names: list[str]) -> float:
    kept = sum(int(mask[n].sum()) for n in names)
    return 1 - kept / sum(mask[n].numel() for n in names)


def test_the_cycle_prunes_to_the_ramp_at_each_update_and_writes_a_row_per_level() -> None:
    torch.manual_seed(0)
    net = tiny_net()
    cycle, results = cycle_for(PLAN, net, [])
    names = cycle.pruner.prunable_names
    n = sum(dict(net.named_parameters())[p].numel() for p in names)
    seen, previous = [], cycle.mask
    for step in range(PLAN.total_steps):
        cycle.before_step(step)
        if step in PLAN.update_steps:
            seen.append(prunable_sparsity(cycle.mask, names))
            assert cycle.mask.is_subset_of(previous)  # masks only shrink
            assert all(
                torch.equal(p[~cycle.mask[k]], torch.zeros_like(p[~cycle.mask[k]]))
                for k, p in net.named_parameters()
                if k in names
            )
            previous = cycle.mask
    cycle.record_due(PLAN.total_steps)
    assert seen == [round(s * n) / n for s in PLAN.sparsities]  # exactly the ramp, to one weight
    assert [r.round for r in results] == [1, 2, 3]
    assert [r.target_sparsity for r in results] == list(LEVELS)
    assert [r.steps for r in results] == [9, 6, 15] and [r.epochs for r in results] == [0.9, 0.6, 1.5]
    # pruned_*: right after the update that reached the level; retrained: at its record step
    assert [(r.pruned["call"], r.retrained["call"]) for r in results] == [(0, 1), (2, 3), (4, 5)]


def test_the_cycle_resets_the_optimizer_and_sets_the_lr_at_every_round_start() -> None:
    torch.manual_seed(0)
    net = tiny_net()
    arm, _ = cycle_for(PLAN, net, [])
    cycle = RoundCycle([arm], OneNet(arm.enforcer))  # what GradualCycle is, around its arm
    opt = torch.optim.SGD(net.parameters(), lr=1.0, momentum=0.9)
    net(torch.randn(4, 1, 12)).sum().backward()
    opt.step()
    assert opt.state
    for step in range(10):  # round 1's steps: its updates and its level's row
        arm.before_step(step)
    trainer = SimpleNamespace(current_epoch=1, global_step=10, optimizers=[opt])  # round 2's first epoch
    cycle.on_train_epoch_start(trainer, None)
    assert not opt.state and arm.round_lr is not None and arm.lr(13) == 0.05
    cycle.on_train_batch_start(trainer, SimpleNamespace(device=torch.device("cpu")), None, 0)
    assert opt.param_groups[0]["lr"] == 0.05


def test_a_resumed_cycle_goes_on_as_if_it_had_not_stopped() -> None:
    torch.manual_seed(0)
    whole, whole_rows = cycle_for(PLAN, tiny_net(), [])
    for step in range(PLAN.total_steps):
        whole.before_step(step)
    whole.record_due(PLAN.total_steps)
    torch.manual_seed(0)
    first, _ = cycle_for(PLAN, tiny_net(), [])
    for step in range(14):  # stopped after step 13: level 1 written, level 2 reached, not written
        first.before_step(step)
    state = first.state_dict()
    torch.manual_seed(0)
    second, rows = cycle_for(PLAN, tiny_net(), [])
    second.load_state_dict(state)
    for step in range(14, PLAN.total_steps):
        second.before_step(step)
    second.record_due(PLAN.total_steps)
    assert [(r.round, r.steps, r.mask_digest) for r in rows] == [
        (r.round, r.steps, r.mask_digest) for r in whole_rows[1:]
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("retrain=weight_rewind", r"retrain='weight_rewind'.*trains the current weights with prune\.schedule=gradual"),
        ("retrain=none", r"retrain='none'.*trains the current weights"),
        ("prune.every=0", r"prune\.every=0 is not allowed; allowed: an integer >= 1"),
        ("++prune.layer_rate_scale={classifier.weight:2}", r"prune\.layer_rate_scale\[classifier\.weight\]=2\.0"),
    ],
)
def test_gradual_refuses_what_it_cannot_do(override: str, message: str) -> None:
    with composed(["prune.schedule=gradual", *override.split()]) as cfg, pytest.raises(ConfigError, match=message):
        to_run_config(cfg, resolve_paths=False)


def test_a_gradual_sweep_sits_next_to_the_iterative_arms_at_an_equal_budget(tmp_path: Path) -> None:
    args = [
        "-m",
        "debug=fast",
        "prune.sparsity=0.6",
        "retrain.budget=2",
        "prune.every=4",
        "prune.schedule=iterative,gradual",
        "retrain=finetune,lr_rewind",
    ]
    code, err = run_in_process(tmp_path, args)
    assert code == 0, err[-2000:]
    (sweep,) = (tmp_path / "outputs" / "debug" / "multiruns").iterdir()
    jobs = {}
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        rows = read_records(job / "records.jsonl")
        jobs[(rows[0]["schedule"], rows[0]["strategy"])] = (job, rows)
    for strategy in ("finetune", "lr_rewind"):
        (_, it), (job, gr) = jobs[("iterative", strategy)], jobs[("gradual", strategy)]
        assert [r["target_sparsity"] for r in gr] == [r["target_sparsity"] for r in it]  # the same checkpoints
        assert gr[-1]["cum_steps"] == it[-1]["cum_steps"] and gr[-1]["cum_epochs"] == it[-1]["cum_epochs"]
        assert (
            all(r["sparsity"] >= r["target_sparsity"] - 1e-3 for r in gr) and gr[-1]["sparsity"] == it[-1]["sparsity"]
        )
        masks = [Mask.load(job / "rounds" / f"mask_{r:03d}.safetensors") for r in range(1, len(gr))]
        assert all(b.is_subset_of(a) for a, b in itertools.pairwise(masks))
    summary = (sweep / "summary.md").read_text()
    assert "4 jobs: 4 done." in summary
    assert "| finetune (gradual) " in summary and "GMP-FT − FT" in summary and "GMP-LRR − LRR" in summary
    assert json.loads((sweep / "0" / "status.json").read_text())["state"] == "done"
