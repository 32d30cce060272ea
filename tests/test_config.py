"""Every config option composes into a checked, typed config; bad input fails with the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO, composed, fake_cifar, fake_image_folder, fake_mnist
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from prune_exp.app.preflight import check_job
from prune_exp.app.run import conf_dir, to_run_config
from prune_exp.config import ConfigError, RunConfig
from prune_exp.store.sweep import sweep_job_overrides

CONF = Path(conf_dir())
SCHEMA_GROUPS = ["data", "model", "optim", "optim/schedule", "prune/criterion", "structure", "retrain", "trainer"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


ALL_OPTIONS = [(g, o) for g in [*SCHEMA_GROUPS, "experiment", "debug", "logger"] for o in options(g)]


def test_every_group_has_options() -> None:
    for group in [*SCHEMA_GROUPS, "experiment", "debug", "logger"]:
        assert options(group), group
    assert options("logger") == ["csv", "mlflow", "tensorboard", "wandb"]
    assert options("retrain") == [
        *("allr", "clr", "finetune", "llr", "lottery", "lr_rewind", "none", "reinit", "scyc", "slr"),
        "weight_rewind",
    ]


@pytest.fixture(scope="module")
def image_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny files of every torchvision dataset, so the preflight can load them offline."""
    root = tmp_path_factory.mktemp("images")
    for folder in ("MNIST", "FashionMNIST"):
        fake_mnist(root, folder)
    fake_cifar(root)
    fake_cifar(root, hundred=True)
    fake_image_folder(root, classes=1000, per_class=1)  # the preflight loads the data: one image a class
    return root


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_option_composes_into_a_checked_typed_config(group: str, option: str, image_data_dir: Path) -> None:
    image_model = group == "model" and option not in ("cnn1d", "mlp", "lenet300")  # 2-D convs need images
    data = ["data=cifar10"] if image_model else []
    cifar_experiment = group == "experiment" and option.startswith(("li_", "renda_")) and "imagenet" not in option
    if image_model or option.startswith("cifar") or cifar_experiment:
        data.append("data.verify=false")  # the fake CIFAR files are not the official ones (md5)
    # N:M fixes the sparsity (2:4 is one-shot 50%) and needs input dims divisible by 4 (not cnn1d's 25)
    nm = ["model=mlp", "prune.schedule=one_shot", "prune.sparsity=0.5"] if option == "nm" else []
    # regression data and the regression task need each other (and a model for 10 features)
    regression = [] if (group, option) not in {("data", "diabetes"), ("task", "regression")} else ["model=mlp"]
    regression += [f"{g}={o}" for g, o in (("data", "diabetes"), ("task", "regression")) if regression and g != group]
    with composed([*data, f"{group}={option}", *nm, *regression, f"paths.data_dir={image_data_dir}"]) as cfg:
        rc = to_run_config(cfg, resolve_paths=False)
        check_job(cfg)  # the model-dependent checks too
    assert isinstance(rc, RunConfig)


def test_the_default_config() -> None:
    with composed() as cfg:
        rc = to_run_config(cfg, resolve_paths=False)
    assert (type(rc.data).__name__, type(rc.model).__name__) == ("MNIST1DConfig", "CNN1DConfig")
    assert (rc.retrain.strategy, rc.prune.schedule, rc.prune.scope) == ("lr_rewind", "iterative", "global")
    assert rc.retrain.budget < rc.dense.epochs


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prune.sparsity=1.0", r"prune\.sparsity=1\.0 is not allowed; allowed: a number in \[0\.0, 1\.0\)"),
        ("prune.sparsity=-0.1", r"prune\.sparsity=-0\.1"),
        ("prune.rate=0", r"prune\.rate=0\.0 is not allowed; allowed: a number in \(0\.0, 1\.0\)"),
        ("prune.rate=1", r"prune\.rate=1\.0"),
        ("prune.scope=local", r"prune\.scope='local' is not allowed; allowed: one of global, layerwise"),
        ("prune.schedule=twice", r"prune\.schedule='twice'.*one_shot, iterative"),
        (
            "retrain=weight_rewind retrain.budget=61",
            r"retrain\.budget=61 is not allowed; allowed: 1\.\.60 for weight_rewind",
        ),
        ("retrain=lr_rewind retrain.budget=100", r"retrain\.budget=100.*lr_rewind"),
        ("retrain.budget=0", r"retrain\.budget=0 is not allowed; allowed: an integer >= 1"),
        ("retrain.finetune_lr=-1", r"retrain\.finetune_lr=-1\.0"),
        ("optim.lr=0", r"optim\.lr=0\.0"),
        ("optim.momentum=1.5", r"optim\.momentum=1\.5"),
        ("optim.nesterov=true optim.momentum=0", r"optim\.nesterov=True"),
        ("optim.schedule.milestones=[50,40]", r"optim\.schedule\.milestones=\[50\.0, 40\.0\]"),
        ("optim.schedule.milestones=[30,60]", r"optim\.schedule\.milestones.*increasing epochs in \(0, 60\)"),
        ("dense.epochs=0", r"dense\.epochs=0"),
        ("dense.rewind_epochs=[0,99]", r"dense\.rewind_epochs=\[0, 99\]"),
        ("data.val_fraction=1", r"data\.val_fraction=1\.0"),
        ("data.batch_size=0", r"data\.batch_size=0"),
        ("select_metric=auc", r"select_metric='auc'.*acc, f1_macro, acc_top5, loss"),
        ("task.name=regressoin", r"task\.name='regressoin'.*one of classification"),
        ("+task.metrics.loss={_target_:torchmetrics.MeanMetric}", r"task\.metrics\.loss=.*other than 'loss'"),
        ("+task.metrics.x=3", r"task\.metrics\.x=3 .*null, or a torchmetrics Metric's config"),
        ("+task.metrics.x={_target_:a.B,higher_is_better:maybe}", r"task\.metrics\.x\.higher_is_better='maybe'"),
        ("trainer.precision=8", r"trainer\.precision='8'"),
        ("seed=-1", r"seed=-1"),
        ("model.init=he", r"model\.init='he'.*one of default, kaiming_normal, kaiming_uniform, xavier_normal"),
        ("++prune.layer_rate_scale={classifier.weight:9}", r"prune\.layer_rate_scale\[classifier\.weight\]=9\.0"),
    ],
)
def test_bad_values_fail_with_the_key_and_the_allowed_values(override: str, message: str) -> None:
    with composed(override.split()) as cfg, pytest.raises(ConfigError, match=message):
        to_run_config(cfg, resolve_paths=False)


def test_layer_rate_scale_from_the_command_line() -> None:
    with composed(["++prune.layer_rate_scale={classifier*:0.5}", "prune.scope=layerwise"]) as cfg:
        check_job(cfg)
        assert to_run_config(cfg, resolve_paths=False).prune.layer_rate_scale == {"classifier*": 0.5}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prune.exclude=[nope.*]", r"prune\.exclude pattern 'nope\.\*' matches no prunable parameter"),
        ("prune.include=[classifier.weight] structure=channel", "no prunable parameters left"),
        ("data=synthetic data.num_classes=4 select_metric=acc_top5", "acc_top5.*more than 5 classes"),
        # the task's metrics: each built once, for the data's classes, before anything runs
        ("+task.metrics.x={_target_:nope.Nope}", r"task\.metrics\.x\._target_='nope\.Nope' cannot be imported"),
        ("+task.metrics.x={_target_:torch.nn.Linear}", r"task\.metrics\.x\._target_=.* is not a torchmetrics Metric"),
        (
            "+task.metrics.x={_target_:torchmetrics.classification.MulticlassAccuracy,average:bogus}",
            r"task\.metrics\.x=.*cannot be built \(.*average.*\); allowed: MulticlassAccuracy's arguments$",
        ),
        (
            "+task.metrics.x={_target_:torchmetrics.aggregation.SumMetric}",  # no direction of its own
            r"task\.metrics\.x: SumMetric does not say whether higher is better; allowed: set higher_is_better",
        ),
        ("+task.metrics.acc_top5=null select_metric=acc_top5", r"select_metric='acc_top5'.*acc, f1_macro, loss$"),
    ],
)
def test_model_dependent_checks(override: str, message: str) -> None:
    with composed(override.split()) as cfg, pytest.raises(ConfigError, match=message):
        check_job(cfg)


def test_unknown_keys_and_wrong_types_fail_at_composition_with_the_key() -> None:
    with pytest.raises(ConfigCompositionException) as e, composed(["prune.sparsty=0.5"]):
        pass
    assert "sparsty" in str(e.value.__cause__ or e.value)
    with pytest.raises(ConfigCompositionException) as e, composed(["optim.lr=fast"]):
        pass
    assert isinstance(e.value.__cause__, ValidationError) and "optim.lr" in str(e.value.__cause__)
    with pytest.raises(ConfigCompositionException, match="retrain/finetuning"), composed(["retrain=finetuning"]):
        pass
    with pytest.raises(ConfigCompositionException) as e, composed(["optim=adam", "optim.momentum=0.9"]):
        pass
    assert "Key 'momentum' not in 'AdamConfig'" in str(e.value.__cause__)


def test_sweep_job_overrides_expands_like_the_basic_sweeper() -> None:
    with composed(["prune.sparsity=0.5"], hydra=True) as cfg:
        cfg.hydra.overrides.task = ["retrain=finetune,lr_rewind", "seed=0,1", "prune.sparsity=0.5"]
        jobs = sweep_job_overrides(cfg)
    assert jobs == [
        ["retrain=finetune", "seed=0", "prune.sparsity=0.5"],
        ["retrain=finetune", "seed=1", "prune.sparsity=0.5"],
        ["retrain=lr_rewind", "seed=0", "prune.sparsity=0.5"],
        ["retrain=lr_rewind", "seed=1", "prune.sparsity=0.5"],
    ]


def test_experiment_compare_sweeps_the_three_strategies_over_seeds() -> None:
    with composed(["experiment=compare"], hydra=True) as cfg:
        jobs = sweep_job_overrides(cfg)
        rc = to_run_config(cfg, resolve_paths=False)
    strategies = {o.split("=")[1] for job in jobs for o in job if o.startswith("retrain=")}
    assert strategies == {"finetune", "weight_rewind", "lr_rewind"} and len(jobs) == 9
    assert rc.prune.sparsity >= 0.9 and rc.prune.schedule == "iterative"


def test_experiment_compare_retraining_sweeps_six_strategies_on_the_main_jobs_setting() -> None:
    with composed(["experiment=compare_retraining"], hydra=True) as cfg:
        jobs = sweep_job_overrides(cfg)
        rc = to_run_config(cfg, resolve_paths=False)
    with composed(["experiment=compare"], hydra=True) as main:
        main_rc = to_run_config(main, resolve_paths=False)
    strategies = [o.split("=")[1] for job in jobs for o in job if o.startswith("retrain=")]
    assert sorted(set(strategies)) == ["allr", "clr", "finetune", "llr", "lr_rewind", "slr"] and len(jobs) == 18
    assert rc.retrain.budget == 5 and main_rc.retrain.budget == 45
    for section in ("data", "model", "optim", "dense", "prune"):  # the main job's, so its dense runs are shared
        assert getattr(rc, section) == getattr(main_rc, section), section


def test_a_group_file_states_only_what_differs_from_its_schema() -> None:
    """Each default lives once, in the schema dataclass: a YAML value equal to it is a second copy."""
    import yaml

    from prune_exp.config import SCHEMAS, schema_name

    nodes = {schema_name(g, k): node for g, schemas in SCHEMAS.items() for k, node in schemas.items()}
    restated = {}
    for path in sorted((REPO / "conf").rglob("*.yaml")):
        text = yaml.safe_load(path.read_text()) or {}
        schema = [d.split("@")[0].lstrip("/") for d in text.get("defaults", []) if str(d).startswith("/schema_")]
        if schema:
            base = OmegaConf.to_container(OmegaConf.structured(nodes[schema[0]]))
            same = [k for k, v in text.items() if k != "defaults" and base.get(k, object()) == v]
            if same:
                restated[path.relative_to(REPO).as_posix()] = same
    assert restated == {}


SITE = """\
# @package _global_
defaults:
  - override /hydra/launcher: slurm
paths:
  data_dir: /shared/datasets
hydra:
  launcher:
    partition: gpu
    account: mylab
"""


def test_a_site_config_in_local_sets_this_machines_defaults(tmp_path: Path) -> None:
    """conf/local/default.yaml (git ignores conf/local/) is composed when it is there, as in the
    lightning-hydra-template; here found through the search path, as a file in conf/local/ is."""
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "default.yaml").write_text(SITE)
    with composed([f"hydra.searchpath=[file://{tmp_path}]"], hydra=True) as cfg:
        assert cfg.paths.data_dir == "/shared/datasets"
        assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.account) == ("gpu", "mylab")
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    with composed([f"hydra.searchpath=[file://{tmp_path}]", "paths.data_dir=/mine"], hydra=True) as cfg:
        assert cfg.paths.data_dir == "/mine"  # the command line still wins
    with composed([], hydra=True) as cfg:  # no site config: the defaults
        assert cfg.hydra.launcher._target_.endswith("FusedLauncher") and cfg.paths.data_dir != "/shared/datasets"
    with composed(["hydra/launcher=basic"], hydra=True) as cfg:  # Hydra's own, one job after another
        assert cfg.hydra.launcher._target_.endswith("BasicLauncher")
    assert "/conf/local/" in (REPO / ".gitignore").read_text().splitlines()


def test_prune_rounds_gives_that_many_rounds_at_the_rate_in_place_of_a_target() -> None:
    from prune_exp.pruning.pruner import sparsity_schedule

    for rate, rounds in ((0.5, 3), (0.2, 11), (0.2, 1), (0.37, 7)):
        with composed(["prune.schedule=iterative", f"prune.rate={rate}", f"prune.rounds={rounds}"]) as cfg:
            pr = to_run_config(cfg, resolve_paths=False).prune
        got = sparsity_schedule(pr.sparsity, pr.schedule, pr.rate)
        assert len(got) == rounds
        assert got == pytest.approx([1 - (1 - rate) ** k for k in range(1, rounds + 1)], abs=1e-12)
    with composed(["prune.rate=0.5", "prune.rounds=3"]) as cfg:
        assert to_run_config(cfg, resolve_paths=False).prune.sparsity == 0.875  # the 0.9 default gives way
    for overrides, message in (
        (["prune.rounds=0"], r"prune\.rounds=0 is not allowed; allowed: an integer >= 1"),
        (
            ["prune.rounds=2", "prune.schedule=one_shot"],
            r"prune\.schedule='one_shot'.*iterative or gradual with prune\.rounds",
        ),
        (["prune.rounds=2", "prune.rate=1.5"], r"prune\.rate=1\.5 is not allowed"),
    ):
        with composed(overrides) as cfg, pytest.raises(ConfigError, match=message):
            to_run_config(cfg, resolve_paths=False)


def test_a_target_that_does_not_import_is_refused_with_its_key() -> None:
    from prune_exp.config import check_targets

    with composed(["debug=fast"]) as cfg:
        rc = to_run_config(cfg, resolve_paths=False)
    check_targets(rc)  # every built-in option imports
    rc.prune.criterion = {"_target_": "prune_exp.pruning.criteria.Magnitud"}  # a user's file: a plain dict
    with pytest.raises(ConfigError) as e:
        check_targets(rc)
    assert str(e.value) == (
        "prune.criterion._target_='prune_exp.pruning.criteria.Magnitud' cannot be imported (prune_exp.pruning."
        "criteria has no 'Magnitud'; did you mean prune_exp.pruning.criteria.Magnitude?); allowed: one of "
        "prune_exp.pruning.criteria.Magnitude, prune_exp.pruning.criteria.Random, prune_exp.pruning.criteria.Taylor, "
        "or the import path of a class of your own"
    )
    rc.prune.criterion = {"batches": 3}
    with pytest.raises(ConfigError, match=r"^prune\.criterion\._target_ is not set, so nothing can be built; allowed"):
        check_targets(rc)
    rc.prune.criterion = {"_target_": "prune_exp.pruning..Magnitude"}
    with pytest.raises(ConfigError, match=r"cannot be imported \(not an import path such as package\.module\.Class\)"):
        check_targets(rc)


def test_instantiate_at_names_the_key_of_a_node_hydra_cannot_build() -> None:
    from prune_exp.config import instantiate_at
    from prune_exp.pruning.criteria import Taylor

    assert isinstance(
        instantiate_at("prune.criterion", OmegaConf.create({"_target_": Taylor.__module__ + ".Taylor"})), Taylor
    )
    model = OmegaConf.create({"_target_": "prune_exp.models.mlp.MLP", "widht": 3})
    with pytest.raises(ConfigError) as e:
        instantiate_at("model", model, input_shape=(1, 4), num_classes=2)
    assert str(e.value) == (
        "model._target_='prune_exp.models.mlp.MLP' cannot be built (TypeError: MLP.__init__() got an unexpected "
        "keyword argument 'widht'); allowed: the arguments prune_exp.models.mlp.MLP takes"
    )
    with pytest.raises(ConfigError, match=r"^structure\._target_='prune_exp\.pruning\.structure\.NN' cannot be imp"):
        instantiate_at("structure", OmegaConf.create({"_target_": "prune_exp.pruning.structure.NN"}))
    taylor = OmegaConf.create({"_target_": "prune_exp.pruning.criteria.Taylor", "batches": 0})
    with pytest.raises(ConfigError, match=r"^prune\.criterion\.batches=0 is not allowed"):  # ours, as it is
        instantiate_at("prune.criterion", taylor)
