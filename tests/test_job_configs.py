"""A sweep's job configs (job_configs.py): composed once per distinct set of group and Hydra
overrides, each job's values set on a copy; every job's config, RunConfig and launch config are
those of Hydra's own composition of it (``load_sweep_config``, what Hydra's launchers run),
whatever kind of override it has and however the config dirs were added: ``--config-dir``,
``--config-path``/``--config-name``, ``hydra.searchpath`` on the command line or in the primary
config."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cloudpickle
import pytest
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from prune_exp.app.job_configs import ComposedLoader, JobConfigs
from prune_exp.app.run import conf_dir, to_run_config
from prune_exp.config import ConfigError

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
    ["seed=6", "retrain=finetune", "name=other"],  # values before and after a group
    ["model.init=xavier_uniform", "prune.schedule=gradual", "prune.every=7", "retrain=finetune"],
]


@contextmanager
def sweep(
    overrides: list[str] = (), config_dir: Path | None = None, config_path: str | None = None, name: str = "run"
) -> Iterator[tuple[object, DictConfig]]:
    """Hydra's loader and multirun config, as ``prune-exp -m [--config-dir D] [--config-path P]
    [--config-name N] OVERRIDES`` makes them (hydra/_internal/utils.py: _run_hydra)."""
    GlobalHydra.instance().clear()
    search = create_config_search_path(config_path or f"file://{conf_dir()}")
    if config_dir is not None:
        search.prepend("command-line", f"file://{config_dir}", anchor="schema")
    hydra = Hydra.create_main_hydra2(task_name="prune-exp", config_search_path=search)
    try:
        yield hydra.config_loader, hydra.compose_config(name, list(overrides), run_mode=RunMode.MULTIRUN)
    finally:
        GlobalHydra.instance().clear()


def app(config: DictConfig) -> DictConfig:
    out = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    OmegaConf.set_struct(out, True)
    return out


def assert_as_hydra(loader, master: DictConfig, jobs: JobConfigs, overrides: list[str]) -> None:
    """The job's launch config is Hydra's, flags included; its checked config and RunConfig are
    those of Hydra's composition."""
    hydras = loader.load_sweep_config(master, list(overrides))
    ours = jobs.config(overrides)
    assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), overrides
    assert (OmegaConf.is_struct(ours), OmegaConf.is_readonly(ours.hydra)) == (
        OmegaConf.is_struct(hydras),
        OmegaConf.is_readonly(hydras.hydra),
    )
    config, rc = jobs.checked(overrides)
    assert OmegaConf.to_yaml(config) == OmegaConf.to_yaml(app(hydras)), overrides
    assert rc == to_run_config(app(hydras), resolve_paths=False, overrides=overrides), overrides


def test_every_job_is_what_hydra_composes() -> None:
    with sweep(["hydra/launcher=fused"]) as (loader, master):
        jobs = JobConfigs(loader, master)
        for overrides in JOBS:
            assert_as_hydra(loader, master, jobs, overrides)
        assert len(jobs._bases) == 7  # one composition per distinct set of group and Hydra overrides


def test_the_launcher_gets_the_composed_config_and_a_pickled_loader_is_hydras() -> None:
    with sweep() as (loader, master):
        jobs = JobConfigs(loader, master)
        composed = ComposedLoader(loader, jobs)
        jobs.checked(["seed=3"])
        calls = []
        jobs.config = lambda overrides: calls.append(overrides) or "composed"  # type: ignore[method-assign]
        assert composed.load_sweep_config(master, ["seed=3"]) == "composed" and calls == [["seed=3"]]
        other = OmegaConf.create(master)  # another master config: composed by Hydra
        assert OmegaConf.select(composed.load_sweep_config(other, ["seed=3"]), "seed") == 3
        # pickled as submitit and joblib pickle a launcher, it is Hydra's loader: a worker composes itself
        assert type(pickle.loads(cloudpickle.dumps(composed))) is type(loader)


def user_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A user's config dir with a strategy and a primary config that adds a second dir (with
    another strategy) and prune_exp's own conf/ by ``hydra.searchpath``."""
    mine, more = tmp_path / "my_conf", tmp_path / "more_conf"
    (mine / "retrain").mkdir(parents=True)
    (more / "retrain").mkdir(parents=True)
    lrr = (Path(conf_dir()) / "retrain" / "lr_rewind.yaml").read_text()
    (mine / "retrain" / "my_lrr.yaml").write_text(lrr.replace("strategy: lr_rewind", "strategy: my_lrr"))
    (more / "retrain" / "more_lrr.yaml").write_text(lrr.replace("strategy: lr_rewind", "strategy: more_lrr"))
    (mine / "my_run.yaml").write_text(
        "defaults:\n  - run\n  - _self_\n"
        f"hydra:\n  searchpath:\n    - file://{more}\n    - file://{conf_dir()}\n"
        "seed: 11\n"
    )
    return mine, more


USER_JOBS = [["retrain=my_lrr", "seed=1"], ["retrain=finetune", "seed=2"], ["retrain=my_lrr", "prune.sparsity=0.5"]]


@pytest.mark.parametrize("how", ["searchpath on the command line", "--config-dir"])
def test_a_users_config_dir_composes_as_in_hydra(tmp_path: Path, how: str) -> None:
    mine, _ = user_dirs(tmp_path)
    args = [f"hydra.searchpath=[file://{mine}]"] if how.startswith("searchpath") else []
    with sweep(args, config_dir=mine if how == "--config-dir" else None) as (loader, master):
        jobs = JobConfigs(loader, master)
        for overrides in USER_JOBS:
            assert_as_hydra(loader, master, jobs, overrides)
        assert jobs.checked(USER_JOBS[0])[1].retrain.strategy == "my_lrr"


@pytest.mark.parametrize("how", ["--config-dir and --config-name", "--config-path and --config-name"])
def test_a_users_primary_config_with_its_searchpath_composes_as_in_hydra(tmp_path: Path, how: str) -> None:
    mine, _ = user_dirs(tmp_path)
    dirs = {"config_dir": mine} if how.startswith("--config-dir") else {"config_path": f"file://{mine}"}
    with sweep([], name="my_run", **dirs) as (loader, master):
        jobs = JobConfigs(loader, master)
        for overrides in [*USER_JOBS, ["retrain=more_lrr"], ["retrain=more_lrr", "seed=3"]]:
            assert_as_hydra(loader, master, jobs, overrides)
        _, rc = jobs.checked(["retrain=more_lrr"])
        assert (rc.retrain.strategy, rc.seed) == ("more_lrr", 11)


def test_a_job_searchpath_override_finds_its_groups(tmp_path: Path) -> None:
    """A job's own ``hydra.searchpath`` (a sweep over config dirs) composes with it."""
    mine, more = user_dirs(tmp_path)
    with sweep() as (loader, master):
        jobs = JobConfigs(loader, master)
        for sp, strategy in ((mine, "my_lrr"), (more, "more_lrr")):
            overrides = [f"hydra.searchpath=[file://{sp}]", f"retrain={strategy}"]
            assert_as_hydra(loader, master, jobs, overrides)


def test_a_bad_value_fails_as_in_hydras_own_composition() -> None:
    with sweep() as (loader, master):
        jobs = JobConfigs(loader, master)
        jobs.checked(["prune.sparsity=0.5"])
        with pytest.raises(ConfigError, match=r"prune\.sparsity=1\.5 is not allowed"):
            jobs.checked(["prune.sparsity=1.5"])
        with pytest.raises(Exception, match=r"prune\.sparsty"):
            jobs.checked(["+prune.sparsty=0.5"])
        with pytest.raises(Exception, match=r"Error merging override prune\.sparsity=abc"):
            jobs.checked(["prune.sparsity=abc"])
        with pytest.raises(Exception, match=r"Could not find 'retrain/nope'"):
            jobs.checked(["retrain=nope"])


def test_each_distinct_override_is_parsed_once() -> None:
    with sweep() as (loader, master):
        jobs = JobConfigs(loader, master)
        parsed: list[str] = []
        real = jobs._parser.parse_overrides
        jobs._parser.parse_overrides = lambda overrides: parsed.extend(overrides) or real(overrides)
        for seed in range(4):
            for strategy in ("finetune", "lr_rewind"):
                jobs.checked([f"retrain={strategy}", f"seed={seed}"])
    assert sorted(parsed) == sorted([f"seed={s}" for s in range(4)] + ["retrain=finetune", "retrain=lr_rewind"])


def test_the_preflights_run_config_with_the_jobs_paths_is_the_jobs_own(tmp_path: Path) -> None:
    """The fused launcher builds each arm from the preflight's RunConfig (run.with_paths): the
    RunConfig the job would make from its config, paths resolved."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from prune_exp.app.run import with_paths

    with sweep([f"hydra.sweep.dir={tmp_path}"]) as (loader, master):
        jobs = JobConfigs(loader, master)
        for num, overrides in enumerate(JOBS[:6]):
            config = jobs.config(overrides)
            with open_dict(config):
                config.hydra.runtime.output_dir = str(tmp_path / str(num))
            HydraConfig.instance().set_config(config)
            assert with_paths(jobs.checked(overrides)[1], config) == to_run_config(app(config), overrides=overrides)
