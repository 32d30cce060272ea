"""The preflight: every check a run or sweep must pass before Hydra writes anything. It checks
and never trains or writes; the Hydra callback ``hydra_callbacks.Preflight`` runs it.

It refuses, with one line naming the key: a bad config value (config.check_config), a model
whose layer names the patterns miss, data that cannot be loaded or that leaves a split empty,
a strategy position outside the dense run, an output or cache dir that cannot be written, a
job dir that holds a job of another config or a live writer, and a dense cache entry a job
would use that is truncated or altered."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from prune_exp.app.session import SESSION
from prune_exp.config import (
    OUTSIDE_IDENTITY,
    ConfigError,
    PruneExpError,
    check_accelerator,
    default_select_metric,
    instantiate_at,
    sweep_direction,
    task_metrics,
    world_size,
)

log = logging.getLogger("prune_exp")


def data_key(cfg: DictConfig) -> str:
    """What decides the data a job loads: its data config and ``paths.data_dir``."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return "data:" + json.dumps([data, str(OmegaConf.select(cfg, "paths.data_dir"))], sort_keys=True, default=str)


def load_data(cfg: DictConfig, memo: dict[str, Any] | None = None) -> tuple[str, int]:
    """The digest of the job's data and its number of training examples, loaded and checked now
    (a missing set is downloaded). With ``memo`` (a sweep's) each data key is loaded once."""
    key = data_key(cfg)
    if memo is not None and key in memo:
        return memo[key]
    dm = instantiate_at("data", cfg.data, data_dir=str(OmegaConf.select(cfg, "paths.data_dir")))
    dm.setup()  # the job's own loading and checks: a bad file fails here, before any training
    facts = dm.data_digest(), len(dm.train)
    if memo is not None:
        memo[key] = facts
    return facts


@dataclass(frozen=True)
class CheckedJob:
    """What the preflight learnt about a job from its data: the digest (run.dense_spec_of) and
    the epoch files of the dense run its strategy reads."""

    digest: str
    dense_epochs_needed: set[int]


def check_job(cfg: DictConfig, _seen: dict[str, Any] | None = None, rc: Any = None) -> CheckedJob:
    """Raise a PruneExpError if this job would fail: types and ranges, the parts that need the
    model or the classes (name patterns, the task's metrics), then its data (loaded and checked:
    files, counts, labels, split sizes) and the strategy's positions in steps of that data, so
    that a bad value fails before any data is made. ``_seen``: a sweep's memo, so that each
    data set and each model is checked once; ``rc``: the job's RunConfig, if the caller has it."""
    from prune_exp.app.run import to_run_config
    from prune_exp.data.order import epoch_steps
    from prune_exp.job.plan import JobPlan

    if rc is None:  # a single run: its config has the hydra node (its command line)
        rc = to_run_config(cfg, resolve_paths=False, overrides=OmegaConf.select(cfg, "hydra.overrides.task") or ())
    if OmegaConf.select(cfg, "logger._target_"):
        from prune_exp.job.tracking import check_available

        check_available(str(cfg.logger._target_))
    parts = [OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "model", "prune", "structure", "task")]
    parts += [rc.select_metric, rc.dense.weights]
    model_key = json.dumps(parts, sort_keys=True, default=str)
    if _seen is None or model_key not in _seen:
        check_model(cfg, rc)
        if _seen is not None:
            _seen[model_key] = None
    digest, examples = load_data(cfg, _seen)
    plan = JobPlan.of(rc, epoch_steps(examples, rc.data.batch_size, world_size(rc.trainer)))  # the job's own
    return CheckedJob(digest, plan.dense_epochs_needed)


def check_model(cfg: DictConfig, rc: Any) -> None:
    """The checks that need the network or the data's classes: the prunable names the patterns
    match, the task's metrics (each built once), and a select_metric the data can have. The
    data's shape and classes come from its config (no data loaded)."""
    from prune_exp.job.plan import PrunerSpec
    from prune_exp.lit.task import Task
    from prune_exp.models.init import build_net

    dm = instantiate_at("data", cfg.data, data_dir=str(OmegaConf.select(cfg, "paths.data_dir")))
    if dm.task != rc.task.name:
        raise ConfigError(
            f"task.name={rc.task.name!r} but {type(dm).__name__} has {dm.task} targets; allowed: task={dm.task}"
        )
    task = Task.of(rc.task, dm.num_classes)  # every metric is a Metric with a direction
    if rc.select_metric in task.left_out:
        top_k = task_metrics(rc.task)[rc.select_metric]["top_k"]
        raise ConfigError(
            f"select_metric={rc.select_metric!r} needs more than {top_k} classes (its top_k), the data has "
            f"{dm.num_classes}; allowed: {', '.join(task.names)}"
        )
    net = build_net(cfg.model, dm.input_shape, dm.num_classes)
    if rc.dense.weights is not None:
        check_weights_fit(net, Path(rc.dense.weights))
    for epoch, path in rc.dense.rewind_weights.items():
        check_weights_fit(net, Path(path), f"dense.rewind_weights[{epoch}]")
    criterion, structure = (
        instantiate_at("prune.criterion", cfg.prune.criterion),
        instantiate_at("structure", cfg.structure),
    )
    PrunerSpec.of(rc, criterion, structure).build(net, [rc.prune.sparsity])  # the job's spec: its names checked


def check_weights_fit(net: Any, path: Path, key: str = "dense.weights") -> None:
    """The file ``key`` names is readable and is a state dict of exactly this model (names and shapes)."""
    from prune_exp.store.checkpoint import read_weights

    state = read_weights(path, key)
    own = net.state_dict()
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    wrong = sorted(k for k in own.keys() & state.keys() if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = [
            f"{what} {names[:3]}{' ...' if len(names) > 3 else ''}"
            for what, names in (("missing", missing), ("not in the model", unexpected), ("of other shapes", wrong))
            if names
        ]
        raise ConfigError(
            f"{key}={str(path)!r} does not fit model ({'; '.join(parts)}); allowed: the state_dict() "
            "of the network this config builds"
        )


def check_writable(key: str, path: Path) -> None:
    """ConfigError unless ``path`` exists as a writable dir or could be created as one."""
    path = path.absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise OSError(f"{existing} is not a directory")
        with tempfile.TemporaryFile(dir=existing):  # the real test: os.access says yes to root
            pass
    except OSError as e:
        raise ConfigError(f"{key}={str(path)!r} cannot be written ({e}); allowed: a writable directory") from None


def check_outputs(
    config: DictConfig, job_dir: Path | None, dir_key: str, job: CheckedJob, _seen: dict[Any, Any] | None = None
) -> str:
    """The job dir (if known) belongs to this config and no live process holds it, the output
    and cache dirs can be written, and the files of the dense cache entry this job would reuse
    (found by its data's digest) are intact; the hash of that dense run. ``_seen``: a sweep's
    memo, so that each directory is tried and each cache entry read and verified once, however
    many jobs share it."""
    from prune_exp.app.run import config_fingerprint, dense_spec_of
    from prune_exp.dist import is_main
    from prune_exp.job.status import check_job_dir
    from prune_exp.store.dense_cache import DenseCache, spec_hash
    from prune_exp.store.jobdir import busy, holder

    seen: dict[Any, Any] = {} if _seen is None else _seen
    if job_dir is not None:
        once(seen, ("writable", _existing(job_dir)), lambda: check_writable(dir_key, job_dir))
        who = holder(job_dir) if is_main() else None  # (DDP) the other ranks run inside rank 0's job
        if who is not None:
            raise busy(job_dir, who)
        if job_dir.exists():  # an earlier job's dir: it must be this config's
            check_job_dir(job_dir, config_fingerprint(config))
    cache_dir = Path(str(OmegaConf.select(config, "paths.cache_dir")))
    once(seen, ("writable", _existing(cache_dir)), lambda: check_writable("paths.cache_dir", cache_dir))
    h = spec_hash(dense_spec_of(config, job.digest))
    run = once(seen, ("dense", str(cache_dir), h), lambda: DenseCache(cache_dir).load(h))
    if run is not None:
        epochs = frozenset({run.epochs} | job.dense_epochs_needed)
        once(seen, ("verified", run.path, epochs), lambda: run.verify(set(epochs)))
    return h


def once(seen: dict[Any, Any], key: Any, check: Callable[[], Any]) -> Any:
    """``check()``'s result, computed the first time ``key`` is asked for (a raise is not kept)."""
    if key not in seen:
        seen[key] = check()
    return seen[key]


def _existing(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists (what a writability check tries)."""
    path = path.absolute()
    return next(p for p in (path, *path.parents) if p.exists())


def output_dir(config: DictConfig, key: str) -> Path:
    """The run or sweep dir ``key`` names; ConfigError if it is empty (Hydra would write into
    the working directory)."""
    value = str(OmegaConf.select(config, key) or "").strip()
    if not value:
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: a directory (the default is under outputs/)")
    if key == "hydra.run.dir":
        SESSION.dir_key, SESSION.dir = key, value
    return Path(value)


# Errors that mean "bad input": ours, OmegaConf's (wrong type, unknown key) and Hydra's
# (an option that does not exist). Each names the key.
INPUT_ERRORS = (PruneExpError, OmegaConfBaseException, HydraException)


def own_error(e: BaseException) -> BaseException:
    """Our own error under the ones Hydra and OmegaConf wrap it in (a resolver's, such as
    ``${direction:}``'s: "ConfigError raised while resolving interpolation"), else ``e``."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, PruneExpError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return e


def _exit_with(e: BaseException, where: str = "") -> None:
    # One clear message, no traceback: it is the user's input, not our bug. (Hydra turns an
    # exception raised in a callback into a warning, so exiting is the way to stop the run.)
    kind = "error" if isinstance(e, PruneExpError) and not isinstance(e, ConfigError) else "config error"
    sys.exit(f"prune-exp: {kind}{where}: {e}{_why(e)}")


def _why(e: Exception) -> str:
    """Hydra's "Error merging override x=abc" keeps its reason in its cause: that, in a few words."""
    cause = e.__cause__
    if not isinstance(e, HydraException) or not isinstance(cause, OmegaConfBaseException):
        return ""
    reason = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
    return f" ({reason})" if reason and reason not in str(e) else ""


@contextmanager
def preflight_errors(where: str = "") -> Iterator[None]:
    """Bad input exits with one line; any other exception (our bug) exits with its traceback:
    Hydra would turn it into a warning and start the jobs unchecked."""
    try:
        yield
    except INPUT_ERRORS as e:
        _exit_with(own_error(e), where)
    except Exception:
        log.exception("the preflight check failed%s", where)
        sys.exit(f"prune-exp: internal error in the preflight check{where} (traceback above)")


def check_selection(configs: list[DictConfig]) -> None:
    """ConfigError if the report would have to choose on a val split the data lacks: jobs with
    data.val_fraction=0 that differ only in their budget (and seed) leave it nothing to choose
    the budget on, as the test split is never used to choose."""
    budgets: dict[str, set[Any]] = {}
    for cfg in configs:
        if OmegaConf.select(cfg, "data.val_fraction") != 0:
            continue
        tree = OmegaConf.to_container(cfg, resolve=False)
        assert isinstance(tree, dict)
        for key in (*OUTSIDE_IDENTITY, "seed"):
            tree.pop(key, None)
        budget = tree.get("retrain", {}).pop("budget", None)
        budgets.setdefault(json.dumps(tree, sort_keys=True, default=str), set()).add(budget)
    several = next((sorted(b) for b in budgets.values() if len(b) > 1), None)
    if several is not None:
        raise ConfigError(
            f"retrain.budget={','.join(map(str, several))} with data.val_fraction=0: the report chooses each "
            "strategy's budget on the val split, and there is none; allowed: one retrain.budget, or "
            "data.val_fraction > 0"
        )


def check_strategy_names(rcs: list[Any]) -> None:
    """ConfigError if two jobs (their RunConfigs) give one strategy name to different strategy
    configs, or two names one short name: the report would merge them (report/arms.py: the same
    rule, on the records)."""
    import pandas as pd

    from prune_exp.report.arms import IDENTITY_KEYS, check_arms, gradual_arms

    def row(num: int, rc: Any) -> dict[str, Any]:
        retrain = {f"retrain.{k}": getattr(rc.retrain, k) for k in (*IDENTITY_KEYS, "short")}
        # job: the job's number in the sweep, as Hydra numbers its dir and the report names it
        return {"job": str(num), "strategy": rc.retrain.strategy, "schedule": rc.prune.schedule, **retrain}

    if rcs:
        check_arms(gradual_arms(pd.DataFrame([row(num, rc) for num, rc in enumerate(rcs)])))


def check_launch(job_cfg: DictConfig, launcher: str, multirun: bool) -> None:
    """ConfigError if the launcher cannot run the job as configured: DDP needs one process per
    device, and a GPU job needs a GPU where it runs (SLURM's nodes, not the login node, for
    hydra/launcher=slurm: there the job checks it when it starts)."""

    tr = job_cfg.trainer
    if multirun and world_size(tr) > 1 and "Slurm" not in launcher:
        raise ConfigError(
            f"trainer.strategy=ddp with {world_size(tr)} processes in a multirun needs a "
            f"launcher that starts one process per device; allowed: hydra/launcher=slurm with "
            f"hydra.launcher.tasks_per_node={tr.devices}, or a single run (no -m)"
        )
    if "Slurm" not in launcher:
        check_accelerator(tr.accelerator)


def check_sweeper_direction(config: DictConfig) -> None:
    """ConfigError if the sweeper optimizes the jobs' values the wrong way: a job returns its
    final round's val select_metric, and Optuna minimizes unless told (``hydra.sweeper.direction``;
    Nevergrad's ``hydra.sweeper.optim.maximize``), so a search over an LR on acc would report
    the worst LR as the best."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction")
    maximize = OmegaConf.select(config, "hydra.sweeper.optim.maximize")
    if direction is None and maximize is None:
        return
    if isinstance(direction, (list, ListConfig)) and len(direction) == 1:  # one objective, as a list
        direction = direction[0]
    direction = getattr(direction, "name", direction)  # Optuna's sweeper: an Enum
    metric = config.get("select_metric") or default_select_metric(config.task)
    want = sweep_direction(config.task, metric)  # ConfigError for a task or select_metric that is none
    why = f"a job's value is its final val {metric}, which the sweep must {want} (hydra/sweeper=tune sets it)"
    if direction is not None and str(direction) != want:
        raise ConfigError(f"hydra.sweeper.direction={direction} is not allowed; allowed: {want}: {why}")
    if maximize is not None and bool(maximize) != (want == "maximize"):
        raise ConfigError(f"hydra.sweeper.optim.maximize={maximize!r} is not allowed; allowed: {not maximize}: {why}")


def where_in_sweep(overrides: list[str]) -> str:
    return f" in the sweep job [{' '.join(overrides)}]"
