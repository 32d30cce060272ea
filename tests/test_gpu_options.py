"""Speed options: channels_last and torch.compile keep the masks exact (CPU here), compile
happens once per stage (not per round), and the CUDA paths run where a GPU is (else skip)."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from helpers import tiny_dense
from torch import nn

from prune_exp.config import MultiStepScheduleConfig, SGDConfig, TrainerConfig
from prune_exp.data.synthetic import SyntheticDataModule
from prune_exp.job.rounds import build_rounds, dense_module, fit_rounds
from prune_exp.lit.trainer import Job
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Unstructured
from prune_exp.retrain.lr import StrategyLR
from prune_exp.retrain.schedules import LRSchedule
from prune_exp.retrain.strategies import plan_round, strategy_config
from prune_exp.store.dense_cache import DenseRun

pytestmark = pytest.mark.slow


def conv_net() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 8, 3, padding=1),
            bn1=nn.BatchNorm2d(8),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(8, 8, 3, padding=1),
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Linear(8, 4),
        )
    )


def conv_job(trainer: TrainerConfig) -> Job:
    dm = SyntheticDataModule(
        batch_size=32, eval_batch_size=256, val_fraction=0.2, split_seed=0, num_samples=320, num_classes=4,
        shape=(1, 6, 6), noise=1.0, data_seed=0,
    )  # fmt: skip
    dm.setup()
    optim = SGDConfig(lr=0.05, momentum=0.9, weight_decay=5e-4, schedule=MultiStepScheduleConfig(milestones=[2]))
    return Job(dm, conv_net, optim, LRSchedule(0.05, 3, optim.schedule), trainer, seed=0, progress_bar=False)


def retrain(job: Job, dense: DenseRun, tmp_path: Path, rounds: int):
    sparsities = [1 - 0.5**r for r in range(1, rounds + 1)]

    module = dense_module(job, dense)
    pruner = Pruner(module.net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=sparsities)
    rt = strategy_config("lr_rewind", budget=1)
    plan = plan_round(rt, dense.epochs, job.steps_per_epoch)
    stage = build_rounds(
        job, dense, module, pruner, plan=plan, lr=StrategyLR.of(rt, plan, job.schedule, job.steps_per_epoch),
        log_dir=tmp_path / f"log{rounds}", on_round_end=lambda *a: None,
    )  # fmt: skip
    return stage.module, stage.pruner, fit_rounds(job, stage, log_dir=tmp_path / f"log{rounds}")


def assert_pruned_weights_are_zero(module, mask) -> None:
    params = dict(module.net.named_parameters())
    for name, keep in mask.items():
        assert torch.equal(params[name].detach()[~keep], torch.zeros(int((~keep).sum()))), name


def test_channels_last_trains_nhwc_and_keeps_the_masks_exact(tmp_path: Path) -> None:
    job = conv_job(TrainerConfig(channels_last=True))
    dense = tiny_dense(job, tmp_path / "cache")
    module, _pruner, mask = retrain(job, dense, tmp_path, rounds=2)
    assert module.net.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert mask.sparsity() == pytest.approx(0.75, abs=0.01)
    assert_pruned_weights_are_zero(module, mask)
    # the same run in the default layout: the same masks (layout changes no arithmetic here)
    plain = conv_job(TrainerConfig())
    _m, _p, plain_mask = retrain(plain, tiny_dense(plain, tmp_path / "cache2"), tmp_path / "plain", rounds=2)
    assert plain_mask == mask


def test_torch_compile_compiles_once_per_stage_and_keeps_the_masks_exact(tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    job = conv_job(TrainerConfig(compile=True))
    dense = tiny_dense(dataclasses.replace(job, trainer=TrainerConfig()), tmp_path / "cache")
    graphs = []
    for rounds in (1, 2):
        torch._dynamo.reset()
        counters.clear()
        module, _pruner, mask = retrain(job, dense, tmp_path, rounds=rounds)
        assert_pruned_weights_are_zero(module, mask)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] >= 1 and graphs[0] == graphs[1]  # two rounds compile no more than one


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_cuda_mixed_precision_channels_last_compile_keep_the_masks_exact(tmp_path: Path, precision: str) -> None:
    trainer = TrainerConfig(accelerator="gpu", precision=precision, channels_last=True, compile=True)
    job = conv_job(trainer)
    dense = tiny_dense(job, tmp_path / "cache")
    module, _pruner, mask = retrain(job, dense, tmp_path, rounds=2)
    assert next(module.net.parameters()).is_cuda
    assert_pruned_weights_are_zero(module.cpu(), mask.to("cpu"))
