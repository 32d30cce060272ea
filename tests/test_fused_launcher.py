"""hydra/launcher=fused: a sweep's jobs grouped by round structure, each group trained in this
process as one stacked network, the rest one after another; the report as with any launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import composed, run_in_process

from prune_exp.app.fused_launch import fusion_key, plan_groups
from prune_exp.app.run import to_run_config
from prune_exp.store.files import STATUS_FILE
from prune_exp.store.records import read_records

FAST = ["debug=fast", "efficiency.measure_speed=false", "prune.schedule=iterative", "prune.rate=0.5"]


def _keys(*jobs: list[str]) -> list[tuple[str | None, str]]:
    """Each job's fusion_key, from its composed config and RunConfig."""
    out = []
    for overrides in jobs:
        with composed([*FAST, *overrides]) as cfg:
            out.append(fusion_key(cfg, to_run_config(cfg, resolve_paths=False, overrides=overrides)))
    return out


def test_jobs_group_by_round_structure_and_arms_may_differ_in_seed_strategy_pruning_and_lr() -> None:
    keys = _keys(
        ["retrain=finetune", "seed=0"],
        ["retrain=lr_rewind", "seed=1", "optim.lr=0.05", "prune/criterion=random", "structure=channel"],
        ["retrain=finetune", "retrain.finetune_lr=0.001", "seed=2"],
        ["retrain=weight_rewind", "retrain.budget=2"],  # other rounds: its own group
        ["retrain=none"],  # trains nothing
        ["retrain=finetune", "prune.schedule=gradual"],
        ["retrain=finetune", "model.hidden=[8]"],  # another network
        ["retrain=finetune", "seed=3", "prune.sparsity=0.875"],  # three rounds, not two
        ["retrain=finetune", "trainer.strategy=ddp", "trainer.devices=2"],
        ["retrain=finetune", "trainer.compile=true"],
        ["retrain=finetune", "seed=4", "prune.rounds=2"],  # two rounds (its sparsity comes from them)
    )
    groups = plan_groups(keys, max_arms=64)
    assert [g for g, _ in groups] == [[0, 1, 2], [3], [4], [5], [6], [7], [8], [9], [10]]
    reasons = dict((g[0], r) for g, r in groups)
    assert reasons[0] == ""
    assert "does not train" in reasons[4] and "gradual" in reasons[5] and "ddp" in reasons[8]
    assert "trainer.compile" in reasons[9]
    assert "no other job of the sweep shares" in reasons[3] and "no other job" in reasons[6]
    assert keys[0][0] == keys[1][0] != keys[7][0]


def test_a_group_larger_than_max_arms_is_split_in_order() -> None:
    keys = _keys(*[["retrain=finetune", f"seed={s}"] for s in range(5)])
    assert [g for g, _ in plan_groups(keys, max_arms=2)] == [[0, 1], [2, 3], [4]]


@pytest.mark.slow
def test_a_fused_sweep_writes_every_job_dir_and_the_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, "retrain=finetune,lr_rewind,none", "seed=0,1", "hydra/launcher=fused"]
    code, err = run_in_process(tmp_path, [*args, f"hydra.sweep.dir={sweep}"])
    assert code == 0, err[-3000:]
    groups = {}
    for d in sorted(p for p in sweep.iterdir() if (p / "records.jsonl").exists()):
        rows = read_records(d / "records.jsonl")
        assert json.loads((d / STATUS_FILE).read_text())["state"] == "done"
        groups[(rows[-1]["strategy"], rows[-1]["seed"])] = {r["fused_group"] for r in rows}
    assert len(groups) == 6
    trained = [groups[(s, seed)] for s in ("finetune", "lr_rewind") for seed in (0, 1)]
    assert all(g == trained[0] for g in trained) and None not in trained[0]  # one group of four
    assert groups[("none", 0)] == groups[("none", 1)] == {None}
    assert (sweep / "summary.md").exists()
    (log,) = (sweep / "0").glob("*.log")  # Hydra's job log: the group's lines are in every arm's
    assert "4 arms train together" in log.read_text()


@pytest.mark.slow
def test_a_fused_group_that_fails_says_so_in_every_status_and_the_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prune_exp.job.train as train

    def fail(*args, **kwargs):
        raise RuntimeError("the stacked step broke")

    monkeypatch.setattr(train, "fit_group", fail)
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, "retrain=finetune,lr_rewind", "hydra/launcher=fused", f"hydra.sweep.dir={sweep}"]
    code, err = run_in_process(tmp_path, args)
    assert code != 0, err[-2000:]
    for job in ("0", "1"):
        status = json.loads((sweep / job / STATUS_FILE).read_text())
        assert status["state"] == "failed" and "the stacked step broke" in status["error"], job


def test_a_fused_arms_tracker_gets_its_step_loss_its_epoch_loss_and_every_round(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from prune_exp.store.logs import STEP_LOSS, TRAIN_LOSS

    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, "logger=tensorboard", "trainer.log_every_n_steps=2", "job_cache=false"]
    args += ["retrain=finetune,weight_rewind", "hydra/launcher=fused", f"hydra.sweep.dir={sweep}"]
    code, err = run_in_process(tmp_path, args)
    assert code == 0, err[-3000:]
    for job in ("0", "1"):
        recs = read_records(sweep / job / "records.jsonl")
        assert recs[-1]["fused_group"] is not None
        (events,) = (sweep / job / "tensorboard").glob("events.out.tfevents.*")
        ea = EventAccumulator(str(events), size_guidance={"scalars": 0})
        ea.Reload()
        steps = sum(r["retrain_steps"] for r in recs)
        assert [e.step for e in ea.Scalars(STEP_LOSS)] == list(range(2, steps + 1, 2))
        assert len(ea.Scalars(TRAIN_LOSS)) == sum(r["retrain_epochs"] for r in recs)
        assert [(e.step, e.value) for e in ea.Scalars("round/test_acc")] == [
            (r["round"], pytest.approx(r["test_acc"])) for r in recs
        ]
