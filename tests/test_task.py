"""The task: built-in metrics, a user's metrics added by name, each with its direction and scale
(what the records' ``metrics`` column carries to the report)."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassCohenKappa

from prune_exp.config import TaskConfig
from prune_exp.lit.module import PruneModule
from prune_exp.lit.task import Task

KAPPA = {"_target_": "torchmetrics.classification.MulticlassCohenKappa"}


def test_the_classification_task_leaves_out_a_top_k_the_data_cannot_have() -> None:
    assert Task.of(None, 10).names == ("acc", "f1_macro", "acc_top5", "loss")
    few = Task.of(None, 5)  # top-5 of 5 classes is 1 always
    assert few.names == ("acc", "f1_macro", "loss") and few.left_out == ("acc_top5",)
    assert few.describe() == {
        "acc": {"higher_is_better": True, "percent": True},
        "f1_macro": {"higher_is_better": True, "percent": True},
        "loss": {"higher_is_better": False, "percent": False},
    }


def test_a_users_metrics_add_replace_and_drop_by_name() -> None:
    cfg = TaskConfig(metrics={"kappa": KAPPA, "acc_top5": None, "acc": {**KAPPA, "higher_is_better": False}})
    task = Task.of(cfg, 4)
    assert task.names == ("acc", "f1_macro", "kappa", "loss")
    assert task.describe()["acc"]["higher_is_better"] is False  # the entry's own direction wins
    built = task.collection()
    assert isinstance(built["kappa"], MulticlassCohenKappa) and built["kappa"].num_classes == 4  # from the data
    assert not isinstance(built["acc"], MulticlassAccuracy)


def test_the_module_measures_every_metric_of_its_task() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 4)
    x, y = torch.randn(64, 3), torch.randint(0, 4, (64,))
    module = PruneModule(net, None, 4, task=TaskConfig(metrics={"kappa": KAPPA}))
    out = module.evaluate([(x[:40], y[:40]), (x[40:], y[40:])])
    logits = net(x).detach()
    assert set(out) == {"acc", "f1_macro", "kappa", "loss"}
    assert out["acc"] == (logits.argmax(1) == y).float().mean().item()
    assert out["kappa"] == MulticlassCohenKappa(4)(logits, y).item()
    # summed per batch in float64, then divided: equal to the mean over all to float32 precision
    assert out["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)


def test_every_metric_is_its_own_after_a_first_batch_without_error() -> None:
    """torchmetrics' compute groups merge metrics whose states are equal after the first update:
    after a batch predicted without error, acc_top5's and f1_macro's are, and f1_macro then
    reported acc_top5's value (the per-epoch val/f1_macro and the records' f1_macro)."""
    y = torch.arange(10).repeat(2)
    perfect = torch.nn.functional.one_hot(y, 10).float()
    wrong = torch.nn.functional.one_hot((y + 1) % 10, 10).float()
    wrong[:17] = perfect[:17]  # 3 of 20 wrong
    collection = Task.of(None, 10).collection()
    collection.update(perfect, y)
    collection.reset()
    collection.update(wrong, y)
    alone = {name: metric for name, metric in Task.of(None, 10).collection().items()}
    for name, metric in alone.items():
        metric.update(wrong, y)
        assert float(collection.compute()[name]) == pytest.approx(float(metric.compute())), name
    assert float(collection.compute()["f1_macro"]) != pytest.approx(float(collection.compute()["acc_top5"]))
