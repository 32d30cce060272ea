"""A regression task end to end: sklearn's diabetes set, MSE loss, mse/mae/r2 from torchmetrics,
and a sweep that selects and reports where lower is better."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import composed, run_in_process

from prune_exp.app.preflight import check_job
from prune_exp.app.run import dense_spec_of
from prune_exp.config import ConfigError, TaskConfig
from prune_exp.data.base import TensorDataModule
from prune_exp.data.diabetes import DiabetesDataModule
from prune_exp.errors import DataError
from prune_exp.job.artifacts import load_round
from prune_exp.lit.task import Task
from prune_exp.models.mlp import MLP
from prune_exp.pruning.criteria import Taylor
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Unstructured
from prune_exp.store.records import read_records

REGRESSION = Task.of(TaskConfig(name="regression"), 1)


def diabetes() -> DiabetesDataModule:
    dm = DiabetesDataModule(batch_size=32, eval_batch_size=1000, val_fraction=0.2, split_seed=0)
    dm.setup("fit")
    return dm


def test_the_diabetes_set_is_standardized_float_targets() -> None:
    dm = diabetes()
    assert dm.train.y.dtype == torch.float32 and dm.train.y.shape == (len(dm.train),)
    assert (len(dm.train), len(dm.val), len(dm.test)) == (283, 71, 88)  # 442 = 354 + 88; 20% of 354 val
    both = torch.cat([dm.train.y, dm.val.y])  # standardized with the training statistics
    assert float(both.mean()) == pytest.approx(0.0, abs=1e-5) and float(both.std(correction=0)) == pytest.approx(1.0)


def test_the_regression_task_measures_mse_mae_r2_and_its_loss_is_the_mse() -> None:
    assert REGRESSION.names == ("mse", "mae", "r2", "loss")
    assert {n: d["higher_is_better"] for n, d in REGRESSION.describe().items()} == {
        "mse": False,
        "mae": False,
        "r2": True,
        "loss": False,
    }
    assert not any(d["percent"] for d in REGRESSION.describe().values())  # none is a fraction in [0, 1]
    out, y = torch.tensor([[0.5], [1.0], [-1.0]]), torch.tensor([0.0, 1.0, 1.0])
    assert REGRESSION.loss(out, y).item() == pytest.approx((0.25 + 0 + 4) / 3)
    m = REGRESSION.collection()
    m.update(REGRESSION.preds(out, y), y)
    got = {k: float(v) for k, v in m.compute().items()}
    var = float(((y - y.mean()) ** 2).sum())
    assert got == pytest.approx({"mse": 4.25 / 3, "mae": 2.5 / 3, "r2": 1 - 4.25 / var})


def test_taylor_scores_differentiate_the_tasks_loss() -> None:
    """(w * dL/dw)^2 with L the MSE; cross-entropy cannot even take float targets."""
    torch.manual_seed(0)
    dm = diabetes()
    net = MLP((10,), 1, hidden=[8])
    pruner = Pruner(
        net,
        criterion=Taylor(batches=1),
        structure=Unstructured(),
        scope="global",
        sparsities=[0.5],
        score_batches=dm.scoring_batches,
        score_loss=REGRESSION.loss,
    )
    mask = pruner.prune(pruner.initial_mask(), 1)
    x, y = next(iter(dm.scoring_batches()))
    net.zero_grad()
    REGRESSION.loss(net(x), y).backward()
    expected = {n: (p.grad * p).detach() ** 2 for n, p in net.named_parameters() if n in pruner.prunable_names}
    flat = torch.cat([expected[n].flatten() for n in pruner.prunable_names])
    kept = torch.cat([mask[n].flatten() for n in pruner.prunable_names])
    assert int(kept.sum()) == len(flat) // 2
    assert bool(flat[kept].min() >= flat[~kept].max())  # the kept half are the highest scores


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("data=diabetes model=mlp", r"task\.name='classification' but DiabetesDataModule has regression targets; "),
        ("task=regression", r"task\.name='regression' but MNIST1DDataModule has classification targets; "),
        ("data=diabetes model=mlp task=regression select_metric=acc", r"select_metric='acc'.*mse, mae, r2, loss$"),
    ],
)
def test_a_task_the_data_cannot_have_is_refused(overrides: str, message: str) -> None:
    with composed(overrides.split()) as cfg, pytest.raises(ConfigError, match=message):
        check_job(cfg)


class Targets(TensorDataModule):
    task = "regression"

    def __init__(self, y: np.ndarray, **kw) -> None:
        super().__init__(batch_size=4, eval_batch_size=4, val_fraction=0.25, split_seed=0, **kw)
        self.y = y

    input_shape = property(lambda self: (2,))
    num_classes = property(lambda self: 1)

    def load_arrays(self):
        x = np.zeros((len(self.y), 2), np.float32)
        return x, self.y, x, self.y


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.arange(8), r"targets of type int64; allowed: float targets \(regression\)"),
        (np.zeros((8, 2), np.float32), r"targets of shape \(2,\) per example; allowed: \(\)"),
        (np.array([0, 1, np.nan, 3, 4, 5, np.inf, 7], np.float32), r"target of example 2 is not finite \(2 such\)"),
    ],
)
def test_regression_targets_are_checked(y: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Targets(y).setup("fit")


def test_the_loss_is_in_the_dense_spec_only_when_it_is_not_cross_entropy() -> None:
    with composed(["data=diabetes", "model=mlp", "task=regression", "paths.root_dir=/tmp"]) as cfg:
        assert dense_spec_of(cfg, "digest")["loss"] == "mse"
    with composed(["paths.root_dir=/tmp"]) as cfg:
        assert "loss" not in dense_spec_of(cfg, "digest")  # every classification entry keeps its hash


@pytest.mark.slow
def test_a_regression_sweep_selects_and_reports_where_lower_is_better(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    code, err = run_in_process(
        tmp_path,
        [
            "-m",
            "experiment=compare_regression",
            "retrain=finetune,lr_rewind",
            "seed=0,1",
            "dense.epochs=6",
            "optim.schedule.milestones=[3,5]",
            "retrain.budget=3",
            "prune.rate=0.5",
            "prune.sparsity=0.75",
            "efficiency.reps=1",
            "efficiency.warmup=0",
            f"hydra.sweep.dir={sweep}",
        ],
    )
    assert code == 0, err[-3000:]
    dm = diabetes()
    var = float(((dm.test.y - dm.test.y.mean()) ** 2).mean())
    for n in range(4):
        rows = read_records(sweep / str(n) / "records.jsonl")
        assert [r["round"] for r in rows] == [0, 1, 2]
        for r in rows:
            assert not any(k.endswith("_acc") for k in r)
            assert r["select_metric"] == "mse"  # the task's first metric, by default
            assert r["test_loss"] == pytest.approx(r["test_mse"], rel=1e-5)  # the loss is the MSE
            assert r["test_r2"] == pytest.approx(1 - r["test_mse"] / var, abs=1e-5)  # on the same test targets
            assert r["test_mae"] <= r["test_mse"] ** 0.5 + 1e-6  # mean |e| <= root mean e^2
        assert rows[0]["test_r2"] > 0.2  # the dense MLP explains a real part of the variance
        mask, weights = load_round(sweep / str(n), 2)  # every round's mask; its weights only if asked
        assert weights is None and mask == Mask.load(sweep / str(n) / "mask.safetensors")
        status = json.loads((sweep / str(n) / "status.json").read_text())
        assert status["state"] == "done" and status["value"] == rows[-1]["val_mse"]
    summary = (sweep / "summary.md").read_text()
    assert "4 jobs: 4 done." in summary
    assert "### Test mse per strategy (lower is better)" in summary and "(%)" not in summary.split("## Figures")[0]
    assert "median over seeds is at or below the dense median over seeds" in summary
    assert "| LRR − FT " in summary
