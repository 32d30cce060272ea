"""Plug-ins from outside the package: a user's own model, datamodule over their own tensors,
criterion, structure, metric and strategy, in their own directory, referenced by ``_target_`` from their own
config dir (``--config-dir``), run as a real multirun with the records and report checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import run_cli
from safetensors.torch import load_file

from prune_exp.store.columns import all_names
from prune_exp.store.records import read_records

pytestmark = pytest.mark.slow

PACKAGE = '''\
"""A user's own pieces: nothing in here is part of prune_exp."""

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

from prune_exp.data.base import TensorDataModule
from prune_exp.pruning.criteria import Criterion
from prune_exp.pruning.structure import Structure


class TwoLayer(nn.Module):
    """Any nn.Module whose constructor takes input_shape and num_classes."""

    def __init__(self, input_shape, num_classes, hidden=24):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(int(np.prod(input_shape)), hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x):
        return self.body(x)


class Blobs(TensorDataModule):
    """The user's own tensors: Gaussian blobs, one per class."""

    def __init__(self, *, n=400, dims=6, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.n, self.dims, self.classes = n, dims, classes

    @property
    def input_shape(self):
        return (self.dims,)

    @property
    def num_classes(self):
        return self.classes

    def load_arrays(self):
        g = np.random.default_rng(7)
        centers = 2.0 * g.normal(size=(self.classes, self.dims))
        y = g.integers(0, self.classes, self.n)
        x = (centers[y] + g.normal(size=(self.n, self.dims))).astype(np.float32)
        k = self.n * 3 // 4
        return x[:k], y[:k], x[k:], y[k:]


class InputColumns(Structure):
    """A unit is a whole input column of a weight (a Linear's column, a conv's input channel)."""

    name = "input_columns"
    min_kept_units = 1

    def unit_scores(self, scores):
        return scores.movedim(1, 0).reshape(scores.shape[1], -1).sum(1)

    def unit_alive(self, keep):
        return keep.movedim(1, 0).reshape(keep.shape[1], -1).any(1)

    def unit_size(self, shape):
        return int(np.prod(shape)) // shape[1]

    def expand(self, unit_keep, shape):
        view = [1] * len(shape)
        view[1] = -1
        return unit_keep.reshape(view).expand(shape).clone()


class ErrorRate(Metric):
    """The fraction misclassified: lower is better, a fraction in [0, 1] (shown in percent)."""

    higher_is_better = False
    plot_lower_bound, plot_upper_bound = 0.0, 1.0

    def __init__(self, num_classes, **kwargs):  # num_classes: given by prune_exp, from the data
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("wrong", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits, target):
        assert logits.shape[-1] == self.num_classes
        self.wrong += (logits.argmax(-1) != target).sum()
        self.total += target.numel()

    def compute(self):
        return self.wrong.float() / self.total


class SquaredMagnitude(Criterion):
    """w squared: the same ranking as |w| per weight, a different one per unit."""

    name = "squared_magnitude"

    def scores(self, weights, ctx):
        return {n: w.detach().float() ** 2 for n, w in weights.items()}
'''

CONFIGS = {
    "model/two_layer.yaml": "_target_: userplug.TwoLayer\nhidden: 24\n",
    "data/blobs.yaml": (  # the keys every datamodule takes come from the schema; these are its own
        "defaults:\n  - /schema_data_plugin@_here_\n  - _self_\n"
        "_target_: userplug.Blobs\nbatch_size: 32\nval_fraction: 0.2\nn: 400\ndims: 6\nclasses: 3\n"
    ),
    "prune/criterion/squared.yaml": "_target_: userplug.SquaredMagnitude\n",
    "structure/input_columns.yaml": "_target_: userplug.InputColumns\n",
    "task/with_error.yaml": (  # the built-in classification metrics, and the user's own
        "defaults:\n  - /schema_task_default@_here_\n  - _self_\nmetrics:\n  error:\n    _target_: userplug.ErrorRate\n"
    ),
    "retrain/wr_constant.yaml": (
        "defaults:\n  - /schema_retrain_default@_here_\n  - _self_\n"
        "strategy: wr_constant\nweights: rewind\nrewind_to: T-t\nshort: WRc\nlabel: WR weights, constant LR\n"
    ),
}


def jobs_by_dir(sweep: Path) -> list[list[dict]]:
    return [read_records(sweep / str(n) / "records.jsonl") for n in range(4)]


def user_dir(root: Path) -> tuple[Path, Path]:
    """(the user's code dir, their config dir), both outside the package."""
    code, conf = root / "mycode", root / "myconf"
    (code / "userplug").mkdir(parents=True)
    (code / "userplug" / "__init__.py").write_text(PACKAGE)
    for rel, text in CONFIGS.items():
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text(text)
    return code, conf


def test_a_users_model_data_criterion_structure_metric_and_strategy_run_as_a_real_multirun(tmp_path: Path) -> None:
    code, conf = user_dir(tmp_path)
    sweep = tmp_path / "sweep"
    res = run_cli(
        [
            "-m",
            "--config-dir",
            str(conf),
            "data=blobs",
            "model=two_layer",
            "prune/criterion=squared",
            "structure=input_columns",
            "task=with_error",
            "select_metric=error",  # the user's metric, where lower is better, picks and is reported
            "retrain=finetune,wr_constant",
            "seed=0,1",
            "dense.epochs=3",
            "optim.schedule.milestones=[1,2]",
            "retrain.budget=2",
            "prune.sparsity=0.75",
            "prune.schedule=iterative",
            "prune.rate=0.5",
            "efficiency.reps=1",
            "efficiency.warmup=0",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = {}
    for n in range(4):
        assert json.loads((sweep / str(n) / "status.json").read_text())["state"] == "done"
        rows = read_records(sweep / str(n) / "records.jsonl")
        jobs[(rows[0]["strategy"], rows[0]["seed"])] = rows
    assert set(jobs) == {(s, seed) for s in ("finetune", "wr_constant") for seed in (0, 1)}
    for rows in jobs.values():
        assert [r["round"] for r in rows] == [0, 1, 2]
        assert {(r["criterion"], r["structure"]) for r in rows} == {("squared_magnitude", "input_columns")}
        assert {(r["dataset"], r["model"]) for r in rows} == {("blobs", "two_layer")}
        assert [r["target_sparsity"] for r in rows] == [0.0, 0.5, 0.75]
        assert rows[-1]["sparsity"] == pytest.approx(0.75, abs=0.05)  # whole columns of 24 and 3 weights
        # 3 classes of blobs: the dense model is far above chance (1/3)
        assert rows[0]["test_acc"] > 0.6
        for r in rows:  # the user's metric, measured on every split of every round, next to the built-ins
            for split in ("val", "test"):
                assert r[f"{split}_error"] == pytest.approx(1 - r[f"{split}_acc"], abs=1e-6)
            if r["round"] > 0:
                assert r["pruned_test_error"] == pytest.approx(1 - r["pruned_test_acc"], abs=1e-6)
        assert rows[0]["metrics"]["error"] == {"higher_is_better": False, "percent": True}
        assert rows[0]["select_metric"] == "error"
        assert set(rows[1]) <= all_names(("acc", "f1_macro", "error", "loss"))  # 3 classes: no acc_top5
        assert "test_acc_top5" not in rows[1]
    for n in range(4):  # the user's structure: every input column is kept whole or pruned whole
        mask = load_file(sweep / str(n) / "mask.safetensors")
        for name in ("body.1.weight", "body.3.weight"):
            column_kept = mask[name].any(0)
            assert torch.equal(mask[name], column_kept.expand_as(mask[name])), name
            assert not column_kept.all() or name == "body.3.weight"
    # one dense run per seed, shared by both strategies
    assert jobs[("finetune", 0)][0]["dense_hash"] == jobs[("wr_constant", 0)][0]["dense_hash"]
    assert jobs[("finetune", 0)][0]["dense_hash"] != jobs[("finetune", 1)][0]["dense_hash"]

    assert json.loads((sweep / "0" / "status.json").read_text())["value"] == jobs_by_dir(sweep)[0][-1]["val_error"]
    summary = (sweep / "summary.md").read_text()
    assert "4 jobs: 4 done." in summary
    assert "### Test error (%) per strategy (lower is better)" in summary  # the sweep's select metric
    assert "median over seeds is at or below the dense median" in summary
    assert "| WRc − FT " in summary  # the paired differences, named by each strategy's config
    csv = pd.read_csv(sweep / "results.csv")
    assert set(csv["strategy"]) == {"finetune", "wr_constant"} and (csv["setting"] == "all").all()
    labels = {"finetune": "fine-tuning (FT)", "wr_constant": "WR weights, constant LR"}
    assert (csv["retrain.label"] == csv["strategy"].map(labels)).all()
    assert (sweep / "accuracy_vs_compression.png").stat().st_size > 10_000
