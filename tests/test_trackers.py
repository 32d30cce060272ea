"""Experiment trackers (the ``logger`` group): one real sweep with TensorBoard, W&B (offline) and
MLflow (file store), each read back through its own reader, and checked against the records."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
from conftest import TRACKERS
from helpers import composed

from prune_exp.app.run import config_fingerprint
from prune_exp.config import ConfigError
from prune_exp.job.tracking import check_available
from prune_exp.store.records import read_records

LOGGERS = TRACKERS


@pytest.fixture(scope="module")
def tracked(small_sweep):
    root, jobs = small_sweep
    summary = (root / "sweep" / "summary.md").read_text()
    assert "6 jobs: 6 done." in summary and "## Setting" not in summary  # the tracker is not a setting
    return root, jobs


def rows(job_dir: Path) -> list[dict]:
    return read_records(job_dir / "records.jsonl")


def retrain_rows(job_dir: Path) -> list[dict]:
    import csv

    with open(job_dir / "retrain_log" / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r.get("val/acc")]


def test_tensorboard_has_every_round_the_val_metrics_per_epoch_and_the_loss_per_step(tracked) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, jobs = tracked
    for seed in (0, 1):
        job = jobs[("tensorboard", seed)]
        (events,) = glob.glob(str(job / "tensorboard" / "events.out.tfevents.*"))
        ea = EventAccumulator(events, size_guidance={"scalars": 0})
        ea.Reload()
        recs = rows(job)
        got = [(e.step, e.value) for e in ea.Scalars("round/test_acc")]
        assert got == [(r["round"], pytest.approx(r["test_acc"])) for r in recs]
        assert [e.value for e in ea.Scalars("round/sparsity")] == [pytest.approx(r["sparsity"]) for r in recs]
        steps = sum(r["retrain_steps"] for r in recs)
        assert [e.step for e in ea.Scalars("train/loss_step")] == list(range(1, steps + 1))  # every step
        assert len(ea.Scalars("val/acc")) == len(retrain_rows(job)) == sum(r["retrain_epochs"] for r in recs)
        assert "round/seed" not in ea.Tags()["scalars"]  # the job's own columns are hyperparameters


def test_mlflow_has_one_experiment_per_name_one_run_per_job_named_by_its_overrides(tracked, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow reads its file store only when told
    root, jobs = tracked
    client = MlflowClient(f"file:{root}/outputs/mlruns")
    runs = client.search_runs([client.get_experiment_by_name("trk").experiment_id])
    assert len(runs) == 2
    for run in runs:
        seed = int(run.data.params["seed"])
        assert f"seed={seed}" in run.info.run_name and "logger=mlflow" in run.info.run_name
        assert run.info.status == "FINISHED"
        assert run.data.params["retrain.strategy"] == "lr_rewind" and run.data.params["task.name"] == "classification"
        recs = rows(jobs[("mlflow", seed)])
        history = client.get_metric_history(run.info.run_id, "round/test_acc")
        assert sorted((m.step, m.value) for m in history) == [(r["round"], pytest.approx(r["test_acc"])) for r in recs]


def wandb_records(run_file: str) -> list:
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    ds = datastore.DataStore()
    ds.open_for_scan(run_file)
    out = []
    while (data := ds.scan_data()) is not None:
        rec = pb.Record()
        rec.ParseFromString(data)
        out.append(rec)
    return out


def test_wandb_offline_runs_are_grouped_by_sweep_and_hold_the_config_and_every_round(tracked) -> None:
    root, jobs = tracked
    for seed in (0, 1):
        job = jobs[("wandb", seed)]
        (run_file,) = glob.glob(str(job / "wandb" / "offline-run-*" / "run-*.wandb"))
        recs = wandb_records(run_file)
        (run,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
        assert run.run_group == str(root / "sweep") and f"seed={seed}" in run.display_name
        config = {i.key: json.loads(i.value_json) for r in recs if r.HasField("config") for i in r.config.update}
        assert config["seed"] == seed and config["retrain.strategy"] == "lr_rewind"
        history = [
            {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in recs
            if r.HasField("history")
        ]
        rounds = [h for h in history if "round/test_acc" in h]
        assert [(h["round/round"], h["round/test_acc"]) for h in rounds] == [
            (r["round"], pytest.approx(r["test_acc"])) for r in rows(job)
        ]
        assert any(r.HasField("exit") and r.exit.exit_code == 0 for r in recs)  # finished, not left open


def test_a_tracker_whose_client_is_missing_is_refused_naming_the_extra(monkeypatch) -> None:
    import lightning.pytorch.loggers.wandb as lw

    monkeypatch.setattr(lw, "_WANDB_AVAILABLE", False)
    with pytest.raises(ConfigError, match=r"logger=WandbLogger needs its client.*pip install 'prune_exp\[trackers\]'"):
        check_available("lightning.pytorch.loggers.WandbLogger")
    with pytest.raises(ConfigError, match=r"logger\._target_='nope\.Logger' cannot be imported"):
        check_available("nope.Logger")
    check_available("lightning.pytorch.loggers.TensorBoardLogger")  # installed: no error


def test_the_tracker_does_not_change_which_job_a_config_is() -> None:
    prints = set()
    for logger in ("csv", *LOGGERS):
        with composed([f"logger={logger}"], hydra=True) as cfg:
            prints.add(config_fingerprint(cfg))
    assert len(prints) == 1
