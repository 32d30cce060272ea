"""A sweep's job configs for the preflight (job_configs.py): composed once per distinct set of
group overrides, each job's values set on a copy; every job's config and RunConfig are those
of Hydra's own composition of it, whatever kind of override it has."""

from __future__ import annotations

import pytest
from helpers import composed
from hydra import compose
from omegaconf import OmegaConf

from prune_exp.config import ConfigError
from prune_exp.job_configs import JobConfigs
from prune_exp.run import to_run_config

JOBS = [
    [],
    ["seed=3"],
    ["retrain=finetune", "seed=1", "prune.sparsity=0.8"],
    ["retrain=finetune", "seed=2", "prune.sparsity=0.5"],
    ["retrain=weight_rewind", "retrain.budget=20", "dense.epochs=30", "optim.schedule.milestones=[10,20]"],
    ["prune/criterion=taylor", "prune.criterion.batches=4", "prune.rounds=3"],
    ["data=digits", "model=mlp", "model.hidden=[32]", "task.name=classification"],
    ["+task.metrics.kappa={_target_:torchmetrics.classification.MulticlassCohenKappa}"],  # a new key
    ["+task.metrics.acc_top5=null", "seed=5"],  # a built-in dropped
    ["dense={epochs:50,rewind_epochs:[0,5]}", "retrain.budget=10"],  # a dict merged into a node
    ["retrain.budget=${dense.epochs}", "dense.epochs=50"],  # an interpolation the job brings
    ["experiment=compare", "seed=7"],
    ["hydra.job.chdir=false", "seed=4"],  # a setting of Hydra's
    ["model.init=xavier_uniform", "prune.schedule=gradual", "prune.every=7", "retrain=finetune"],
]


def hydras(overrides: list[str]) -> tuple[str, object]:
    full = compose("run", overrides=overrides, return_hydra_config=True)
    app = OmegaConf.masked_copy(full, [k for k in full if k != "hydra"])
    return OmegaConf.to_yaml(app), to_run_config(app, resolve_paths=False)


def test_every_job_is_what_hydra_composes() -> None:
    with composed():
        composer = JobConfigs("run")
        for overrides in JOBS:
            config, rc = composer.of(overrides)
            assert (OmegaConf.to_yaml(config), rc) == hydras(overrides), overrides
        assert len(composer._bases) == 7  # one composition per distinct set of group and Hydra overrides


def test_a_bad_value_fails_as_in_hydras_own_composition() -> None:
    with composed():
        composer = JobConfigs("run")
        composer.of(["prune.sparsity=0.5"])
        with pytest.raises(ConfigError, match=r"prune\.sparsity=1\.5 is not allowed"):
            composer.of(["prune.sparsity=1.5"])
        with pytest.raises(Exception, match=r"prune\.sparsty"):
            composer.of(["+prune.sparsty=0.5"])
        with pytest.raises(Exception, match=r"Error merging override prune\.sparsity=abc"):
            composer.of(["prune.sparsity=abc"])
