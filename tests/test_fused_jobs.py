"""Fused groups of real jobs (job/spine.run_jobs with a group dir): each arm's job dir as an
unfused job writes it, the same records up to float rounding, the log's reasons, failures
in every status, and a killed group resumed to the records of an uninterrupted one."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import job_config
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

from prune_exp.app.run import experiment_of
from prune_exp.job.spine import run_job, run_jobs
from prune_exp.pruning.mask import Mask
from prune_exp.store.checkpoint import Stopwatch
from prune_exp.store.columns import VOLATILE
from prune_exp.store.files import MASK_FILE, RETRAIN_LOG_DIR, WEIGHTS_FILE
from prune_exp.store.logs import TRAIN_LOSS
from prune_exp.store.records import read_records

STRATEGIES = ("finetune", "weight_rewind", "lr_rewind")

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
        # the per-epoch log: the same epochs, steps, train loss and validation, column for column
        fused_log, alone_log = (_epoch_log(tmp_path / d / s) for d in ("fused", "alone"))
        assert [(r["epoch"], r["step"]) for r in fused_log] == [(r["epoch"], r["step"]) for r in alone_log]
        assert list(fused_log[0]) == list(alone_log[0]) and {TRAIN_LOSS, "val/loss", "val/acc"} <= set(fused_log[0])
        for column in set(fused_log[0]) - {"epoch", "step"}:
            assert [float(r[column]) for r in fused_log] == pytest.approx(
                [float(r[column]) for r in alone_log], rel=1e-4, abs=1e-6
            ), column
        mask = Mask.load(tmp_path / "fused" / s / MASK_FILE)
        assert mask == Mask.load(tmp_path / "alone" / s / MASK_FILE)
        weights = load_file(tmp_path / "fused" / s / WEIGHTS_FILE)
        assert all(not bool(weights[n][~m].any()) for n, m in mask.items())
    # a finished group is done: run again in the same dirs, nothing trains and the values stand
    assert run_jobs(_experiments(tmp_path, data_dir, "fused", ["job_cache=false"]), tmp_path / "log") == values


class SixSeconds(Stopwatch):
    """A round that always took six wall seconds."""

    @property
    def seconds(self) -> float:
        return 6.0


def test_each_fused_arm_records_its_share_of_the_groups_retraining_time(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prune_exp.lit.rounds

    monkeypatch.setattr(prune_exp.lit.rounds, "Stopwatch", SixSeconds)
    run_jobs(_experiments(tmp_path, data_dir, "fused", ["job_cache=false"]), tmp_path / "log")
    run_job(_experiments(tmp_path, data_dir, "alone", ["job_cache=false"])[0])
    for s in STRATEGIES:
        assert [r["retrain_seconds"] for r in read_records(tmp_path / "fused" / s / "records.jsonl")[1:]] == [2.0, 2.0]
    alone = read_records(tmp_path / "alone" / STRATEGIES[0] / "records.jsonl")
    assert [r["retrain_seconds"] for r in alone[1:]] == [6.0, 6.0]


DROPOUT = ["job_cache=false", "data=digits", "model=mlp", "model.hidden=[32]", "model.dropout=0.3"]


def test_each_fused_arm_draws_its_dropout_from_its_own_seed_whoever_else_is_in_the_group(
    tmp_path: Path, data_dir: Path
) -> None:
    """An arm's dropout draws come from a stream seeded by its own seed (fused/rng.py), so its
    records are the same in a group of three and in a group of two in another order (vmap's
    own random draws for N arms would depend on the group)."""
    skip = {*VOLATILE, "overrides", "dense_cached", "fused_group"}
    run_jobs(_experiments(tmp_path, data_dir, "three", DROPOUT), tmp_path / "log3")
    run_jobs(_experiments(tmp_path, data_dir, "two", DROPOUT)[:0:-1], tmp_path / "log2")  # lr_rewind, weight_rewind
    for s in STRATEGIES[1:]:
        three, two = (read_records(tmp_path / d / s / "records.jsonl") for d in ("three", "two"))
        assert len(three) == 3 and all(r["fused_group"] for r in three + two)
        assert [{k: v for k, v in r.items() if k not in skip} for r in three] == [
            {k: v for k, v in r.items() if k not in skip} for r in two
        ], s


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


def _run_cut(tmp: Path, data: Path, boom: Boom, extra: Sequence[str] = ()) -> None:
    """The killed jobs run again in ``cut/``, with the group's checkpoint in ``cut_log``."""
    run_jobs(_experiments(tmp, data, "cut", [*KILLED, *extra]), tmp / "cut_log", callbacks=[boom])


def _kill(tmp: Path, data: Path, boom: Boom, extra: Sequence[str] = ()) -> None:
    """The jobs trained whole (in ``whole/``), then again in ``cut/`` until ``boom`` kills them."""
    run_jobs(_experiments(tmp, data, "whole", [*KILLED, *extra]), tmp / "whole_log")
    with pytest.raises(RuntimeError, match="killed"):
        _run_cut(tmp, data, boom, extra)


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


@pytest.mark.parametrize("extra", [(), DROPOUT[1:]], ids=["cnn", "dropout"])
def test_a_fused_group_killed_mid_run_resumes_to_the_records_of_an_uninterrupted_one(
    tmp_path: Path, data_dir: Path, extra: Sequence[str]
) -> None:
    """(dropout: each arm's random stream is in the group's checkpoint)"""
    _kill(tmp_path, data_dir, Boom(3), extra)
    for s in STRATEGIES:  # killed in round 2: round 1's rows are there, the statuses say failed
        assert json.loads((tmp_path / "cut" / s / "status.json").read_text())["state"] == "failed"
        assert [r["round"] for r in read_records(tmp_path / "cut" / s / "records.jsonl")] == [0, 1]
    assert len(list((tmp_path / "cut_log").glob("*/resume.ckpt"))) == 1
    # resumed at epoch 3: a fit that started again from any earlier epoch would fail at epoch 2
    _run_cut(tmp_path, data_dir, Boom(2), extra)
    _assert_cut_like_whole(tmp_path)
    assert not list((tmp_path / "cut_log").glob("*/resume.ckpt"))  # the finished group keeps no checkpoint
