"""The paper-reproduction experiments: each composes with the published hyperparameters
(checked against references.md, typed in here independently), and runs end to end for a
few steps on fabricated data of the right shape, through the real dataset readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import composed, fake_cifar, fake_image_folder, fake_mnist, job_config

from prune_exp.app.run import run
from prune_exp.store.records import read_records

RENDA_CIFAR = {
    "data": "CIFAR10DataModule",
    "dense.epochs": 182,
    "data.batch_size": 128,
    "data.val_fraction": 0.2,
    "optim.lr": 0.1,
    "optim.momentum": 0.9,
    "optim.nesterov": False,
    "optim.weight_decay": 2e-4,
    "optim.schedule.milestones": [91.0, 136.0],
    "optim.schedule.gamma": 0.1,
    "retrain.finetune_lr": 1e-3,
    "prune.schedule": "iterative",
    "prune.rate": 0.2,
    "prune.scope": "global",
    "structure": "Unstructured",
    "sweep.retrain": "finetune,weight_rewind,lr_rewind",
    "sweep.retrain.budget": "10,30,50,70,90,110,130,150,170,182",
    "sweep.seed": "0,1,2",
}
LI = {
    "structure": "Channel",
    "prune.schedule": "one_shot",
    "prune.scope": "layerwise",
    "retrain.budget": 40,
    "retrain.finetune_lr": 1e-3,
    "sweep.retrain.budget": "40",
}
EXPECTED = {
    "renda_resnet20": {**RENDA_CIFAR, "model.depth": 20},
    "renda_resnet56": {**RENDA_CIFAR, "model.depth": 56},
    "renda_resnet110": {**RENDA_CIFAR, "model.depth": 110},
    "renda_vgg16": {**RENDA_CIFAR, "model.depth": 16, "optim.weight_decay": 5e-4},
    "renda_resnet50_imagenet": {
        "data": "ImageFolderDataModule",
        "model.arch": "resnet50",
        "dense.epochs": 90,
        "data.batch_size": 1024,
        "optim.lr": 0.4,
        "optim.nesterov": True,
        "optim.momentum": 0.9,
        "optim.weight_decay": 1e-4,
        "optim.schedule.warmup_epochs": 5.0,
        "optim.schedule.milestones": [30.0, 60.0, 80.0],
        "retrain.finetune_lr": 4e-4,
        "sweep.retrain.budget": "9,18,27,36,45,54,63,72,81,90",
    },
    "lth_lenet300": {
        "data": "MNISTDataModule",
        "model.hidden": [300, 100],
        "optim.name": "adam",
        "optim.lr": 1.2e-3,
        "data.batch_size": 60,
        "prune.scope": "layerwise",
        "prune.rate": 0.2,
        "prune.layer_rate_scale": {"classifier.weight": 0.5},
        "sweep.retrain": "lottery,reinit",
    },
    "li_resnet56_a": {
        **LI,
        "model.depth": 56,
        "prune.sparsity": 0.1,
        "prune.include": ["stage*.block*.conv1.weight"],
        "prune.exclude": [
            f"{b}.conv1.weight" for b in ("stage1.block7", "stage2.block0", "stage3.block0", "stage3.block8")
        ],
    },
    "li_resnet56_b": {
        **LI,
        "model.depth": 56,
        "prune.sparsity": 0.6,
        "prune.layer_rate_scale": {"stage2.*.conv1.weight": 0.5, "stage3.*.conv1.weight": 0.1666666667},
        "prune.exclude": [
            f"{b}.conv1.weight"
            for b in (
                "stage1.block7",
                "stage1.block8",
                "stage2.block0",
                "stage2.block7",
                "stage3.block0",
                "stage3.block8",
            )
        ],
    },
    "li_resnet110_a": {
        **LI,
        "model.depth": 110,
        "prune.sparsity": 0.5,
        "prune.include": ["stage1.block*.conv1.weight"],
        "prune.exclude": ["stage1.block17.conv1.weight"],
    },
    "li_resnet110_b": {
        **LI,
        "model.depth": 110,
        "prune.sparsity": 0.5,
        "prune.layer_rate_scale": {"stage2.*.conv1.weight": 0.8, "stage3.*.conv1.weight": 0.6},
        "prune.exclude": [f"{b}.conv1.weight" for b in ("stage1.block17", "stage2.block0", "stage3.block0")],
    },
}


def value(cfg, key: str):
    from omegaconf import OmegaConf

    if key.startswith("sweep."):
        return str(cfg.hydra.sweeper.params[key.removeprefix("sweep.")])
    if key in ("data", "structure"):
        return cfg[key]._target_.rsplit(".", 1)[1]
    v = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(v) if hasattr(v, "_metadata") else v


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_experiment_has_the_published_hyperparameters(experiment: str) -> None:
    with composed([f"experiment={experiment}"], hydra=True) as cfg:
        got = {k: value(cfg, k) for k in EXPECTED[experiment]}
    assert got == EXPECTED[experiment]


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR-10 pickled batches, MNIST IDX files and ImageNet class folders, tiny."""
    root = tmp_path_factory.mktemp("fabricated")
    fake_cifar(root, per_file=2)
    fake_mnist(root, "MNIST")
    fake_image_folder(root, classes=3, per_class=4, size=64)
    return root


# A few steps: 2 dense epochs, 1 retraining epoch per round, at most 2 rounds (one batch per
# epoch on the fabricated data); everything else as the experiment says.
SHORT = ["dense.epochs=2", "retrain.budget=1", "efficiency.batch=2", "efficiency.reps=1", "efficiency.warmup=0"]
PER_DATA = {
    "renda": ["data.verify=false", "optim.schedule.milestones=[1]", "prune.sparsity=0.36"],
    "li": ["data.verify=false", "optim.schedule.milestones=[1]"],
    "lth": ["prune.sparsity=0.36"],
    "imagenet": [
        "data.num_classes=3",
        "data.val_fraction=0.25",
        "data.num_workers=0",
        "data.batch_size=8",
        "data.image_size=64",  # ResNet-50 at 224 px costs ~20 s of CPU here and tests nothing more
        "data.resize=72",
        "optim.schedule.milestones=[1]",
        "optim.schedule.warmup_epochs=1",
        "prune.sparsity=0.36",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_experiment_runs_a_few_steps_on_fabricated_data(experiment: str, fabricated: Path, tmp_path: Path) -> None:
    kind = "imagenet" if "imagenet" in experiment else experiment.split("_")[0]
    run(job_config(tmp_path, fabricated, [f"experiment={experiment}", *SHORT, *PER_DATA[kind]]))
    rows = read_records(tmp_path / "job" / "records.jsonl")
    assert rows[-1]["round"] == rows[-1]["rounds"] >= 1
    assert rows[-1]["sparsity"] > 0 and rows[-1]["dense_epochs"] == 2 and rows[-1]["dense_steps"] >= 2
