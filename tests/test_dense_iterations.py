"""dense.iterations=N: the dense run's length in optimizer steps (OpenLTH's "30000it"). T is then
N / steps per epoch, a fraction when they do not divide; the last epoch is partial and its end
holds the final weights; positions such as T-t are steps of that run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import composed, run_in_process, tiny_job
from lightning.pytorch.callbacks import Callback

from prune_exp.app.preflight import check_job
from prune_exp.app.run import dense_spec_of
from prune_exp.config import ConfigError, DenseConfig, TrainerConfig, dense_length
from prune_exp.job.dense import dense_stage
from prune_exp.retrain.lr import DenseLR
from prune_exp.retrain.schedules import LRSchedule
from prune_exp.retrain.strategies import plan_round, strategy_config
from prune_exp.store.dense_cache import DenseCache
from prune_exp.store.records import read_records


def test_t_is_the_iterations_in_epochs_and_positions_are_its_steps() -> None:
    assert dense_length(DenseConfig(epochs=60), 6) == 60
    assert dense_length(DenseConfig(iterations=17), 6) == pytest.approx(17 / 6)
    assert dense_length(DenseConfig(iterations=18), 6) == 3 and isinstance(
        dense_length(DenseConfig(iterations=18), 6), int
    )
    wr = plan_round(strategy_config("weight_rewind", budget=1), 17 / 6, 6)
    assert (wr.rewind_step, wr.lr_start_step, wr.epochs) == (11, 11, 1)  # T - t = 17 - 6 steps
    assert plan_round(strategy_config("lr_rewind", budget=2), 17 / 6, 6).lr_start_step == 5
    with pytest.raises(ConfigError, match=r"retrain\.duration=full is not allowed with a dense run of 17 steps"):
        plan_round(strategy_config("lottery"), 17 / 6, 6)
    assert plan_round(strategy_config("lottery"), 18 / 6, 6).epochs == 3
    schedule = LRSchedule(0.1, 17 / 6, _multistep([2.5]))
    assert DenseLR.of(schedule, 6).anchor("last") == pytest.approx(0.01)  # step 16 is epoch 2.67, past the milestone


def _multistep(milestones: list[float]):
    from prune_exp.config import MultiStepScheduleConfig

    return MultiStepScheduleConfig(milestones=milestones, gamma=0.1)


def test_a_run_of_whole_epochs_in_iterations_is_the_run_in_epochs_bit_for_bit(tmp_path: Path) -> None:
    runs = {}
    for length in ("dense.epochs=2", "dense.iterations=12", "dense.iterations=17"):
        code, err = run_in_process(
            tmp_path, ["debug=fast", length, "retrain=weight_rewind", f"hydra.run.dir={length.replace('=', '_')}"]
        )
        assert code == 0, err[-2000:]
        runs[length] = read_records(tmp_path / length.replace("=", "_") / "records.jsonl")
    cache = DenseCache(tmp_path / "outputs" / "cache")
    epochs, twelve, odd = (cache.load(runs[k][0]["dense_hash"]) for k in runs)
    assert epochs is not None and twelve is not None and odd is not None
    assert epochs.hash != twelve.hash  # another spec ("iterations": 12), the same training
    a, b = epochs.state(2), twelve.state(2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs["dense.iterations=12"][-1]["test_acc"] == runs["dense.epochs=2"][-1]["test_acc"]
    assert odd.saved_epochs == {0, 1, 2, 3} and odd.epochs == 3 and odd.meta["steps"] == 17  # epoch 3: partial
    first = runs["dense.iterations=17"][0]
    assert (first["dense_steps"], first["dense_epochs"]) == (17, pytest.approx(17 / 6))
    assert runs["dense.iterations=17"][-1]["cum_steps"] == 17 + 6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dense.iterations=0"], r"dense\.iterations=0 is not allowed; allowed: an integer >= 1"),
        (
            ["dense.iterations=12", "optim/schedule=multistep", "optim.schedule.milestones=[3]"],
            r"optim\.schedule\.milestones=\[3\.0\] .*increasing epochs in \(0, 2\)",
        ),
        (["dense.iterations=17", "retrain=lottery"], r"retrain\.duration=full .* dense\.iterations a multiple of 6"),
        (["dense.iterations=5", "retrain=weight_rewind"], r"retrain\.budget=1 is not allowed"),  # T-t < 0
    ],
)
def test_what_depends_on_t_is_checked_once_the_epoch_length_is_known(overrides: list[str], message: str) -> None:
    with composed(["debug=fast", *overrides]) as cfg, pytest.raises(ConfigError, match=message):
        check_job(cfg)


def test_the_dense_spec_names_the_iterations_in_place_of_the_epochs() -> None:
    with composed(["debug=fast", "dense.iterations=17", "paths.root_dir=/r"]) as cfg:
        spec = dense_spec_of(cfg, "digest")
    with composed(["debug=fast", "dense.iterations=17", "dense.epochs=9", "paths.root_dir=/r"]) as cfg:
        assert dense_spec_of(cfg, "digest") == spec  # dense.epochs does not count then
    assert spec["iterations"] == 17 and "epochs" not in spec


class Killed(Exception):
    pass


class KillAtEpoch(Callback):
    """Raises at the start of ``epoch``: after the checkpoint of the epoch before it."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed


def test_a_killed_partial_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    def job(callbacks=()):
        j = tiny_job(T=3, callbacks=callbacks)
        j.trainer = TrainerConfig(checkpoint_every_s=0)  # a checkpoint at every epoch end
        j.schedule = LRSchedule(j.optim.lr, 20 / j.steps_per_epoch, j.optim.schedule)  # 20 steps: 2.5 epochs
        return j

    spec = {"tiny": "iterations", "iterations": 20}
    whole, _ = dense_stage(job(), DenseCache(tmp_path / "a"), spec, {0, 1, 2, 3}, set())
    with pytest.raises(Killed):
        dense_stage(job([KillAtEpoch(2)]), DenseCache(tmp_path / "b"), spec, {0, 1, 2, 3}, set())
    resumed, cached = dense_stage(job(), DenseCache(tmp_path / "b"), spec, {0, 1, 2, 3}, set())
    assert not cached and whole.meta["steps"] == resumed.meta["steps"] == 20 and resumed.epochs == 3
    for epoch in range(4):
        a, b = whole.state(epoch), resumed.state(epoch)
        assert all(torch.equal(a[k], b[k]) for k in a), epoch
