"""Hydra entry point (``prune-exp``): the only place that reads a DictConfig.

It turns the composed config into typed objects, runs the dense stage (shared through the
cache) and the prune-retrain stage, writes the records and the final mask and weights into
the job dir, and returns the final validation score to Hydra (sweepers can optimize it).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from prune_exp.app.session import resume_hint, sweep_status
from prune_exp.config import (
    LATER_KEYS,
    LATER_MODEL_KEYS,
    OUTSIDE_IDENTITY,
    STYLE_KEYS,
    TASKS,
    ConfigError,
    PathsConfig,
    PruneExpError,
    RunConfig,
    check_config,
    check_known_keys,
    check_targets,
    conf_dir,
    default_select_metric,
    instantiate_at,
    rounds_target,
    world_size,
)
from prune_exp.errors import disk_full
from prune_exp.interrupt import Interrupted, exit_with_parent, signals_interrupt

if TYPE_CHECKING:
    from prune_exp.job.experiment import Experiment

log = logging.getLogger("prune_exp")


def to_run_config(cfg: DictConfig, *, resolve_paths: bool = True, overrides: Sequence[str] = ()) -> RunConfig:
    """Typed, checked config. ``resolve_paths=False`` skips ``paths`` (its values need a running
    Hydra job), which lets the preflight check a config before any directory exists.
    ``overrides``: the job's command-line overrides (what they set wins, see :func:`cli_wins`)."""
    return finish_run_config(typed_run_config(cfg, resolve_paths=resolve_paths), overrides)


def typed_run_config(cfg: DictConfig, *, resolve_paths: bool = True) -> RunConfig:
    """``cfg`` as a RunConfig, its keys and types checked, nothing derived or range-checked yet
    (:func:`finish_run_config` does that; job_configs.py sets a sweep's values between the two)."""
    check_known_keys(cfg)
    # logger: read by run() itself (its values may need a running Hydra job: the run's name)
    sub = OmegaConf.masked_copy(cfg, [k for k in RunConfig.__dataclass_fields__ if k in cfg and k != "logger"])
    if not resolve_paths:
        sub.paths = PathsConfig(root_dir="", data_dir="", cache_dir="", output_dir="")
    run_cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), sub))
    assert isinstance(run_cfg, RunConfig)
    if resolve_paths:  # absolute, so records and logs say where things are wherever they are read
        for key in ("root_dir", "data_dir", "cache_dir", "output_dir"):
            setattr(run_cfg.paths, key, str(Path(getattr(run_cfg.paths, key)).resolve()))
    return run_cfg


def with_paths(run_cfg: RunConfig, cfg: DictConfig) -> RunConfig:
    """``run_cfg`` (made with ``resolve_paths=False``) with ``cfg``'s paths, resolved in the
    running job and absolute, as typed_run_config makes them."""
    resolved = PathsConfig(
        **{f.name: str(Path(str(cfg.paths[f.name])).resolve()) for f in dataclasses.fields(PathsConfig)}
    )
    return dataclasses.replace(run_cfg, paths=resolved)


def finish_run_config(run_cfg: RunConfig, overrides: Sequence[str] = ()) -> RunConfig:
    """The values derived from others put in place (prune.rounds, select_metric), every value
    checked (config.check_config); ``run_cfg``. ``overrides``: the job's command-line ones."""
    cli_wins(run_cfg, overrides)
    if run_cfg.prune.rounds is not None:  # checked with the rest below
        if isinstance(run_cfg.prune.rounds, int) and run_cfg.prune.rounds >= 1:
            run_cfg.prune.sparsity = rounds_target(run_cfg.prune.rate, run_cfg.prune.rounds)
    check_config(run_cfg)
    check_targets(run_cfg)  # here, not where the job builds them: Hydra's error would not name the key
    if run_cfg.select_metric is None:
        run_cfg.select_metric = default_select_metric(run_cfg.task)
    return run_cfg


def cli_wins(run_cfg: RunConfig, overrides: Sequence[str]) -> None:
    """prune.rounds and prune.sparsity each set the target: given both on the command line they
    are refused; the one the command line gives wins over the other from a config file (an
    experiment's), and the log says so once."""
    keys = override_keys(overrides)
    pr = run_cfg.prune
    if pr.rounds is None or not keys & {"prune.rounds", "prune.sparsity"}:
        return
    if {"prune.rounds", "prune.sparsity"} <= keys:
        raise ConfigError(
            f"prune.rounds={pr.rounds} and prune.sparsity={pr.sparsity} both set the target sparsity "
            f"(prune.rounds gives 1 - (1 - prune.rate)^rounds); allowed: one of them on the command line"
        )
    if "prune.sparsity" in keys:
        _note_once(f"prune.sparsity={pr.sparsity} from the command line: the config's prune.rounds={pr.rounds} dropped")
        pr.rounds = None
    elif isinstance(pr.rounds, int) and pr.rounds >= 1:
        target = rounds_target(pr.rate, pr.rounds)
        if abs(target - pr.sparsity) > 1e-12:
            _note_once(
                f"prune.rounds={pr.rounds} from the command line sets prune.sparsity={target:.6g} "
                f"(not the config's {pr.sparsity})"
            )


def override_keys(overrides: Sequence[str]) -> set[str]:
    """The config keys ``overrides`` set: ``a.b=1`` sets ``a.b``; ``a={b:1,c:{d:2}}`` sets ``a.b``
    and ``a.c.d`` (a dict is merged into the node)."""
    keys = set()
    for o in overrides:
        key, eq, value = o.partition("=")
        key = key.lstrip("+~")
        if eq and value.lstrip().startswith("{"):
            keys |= {f"{key}.{k}" for k in _dict_keys(o)}
        elif eq:
            keys.add(key)
    return keys


@functools.cache
def _dict_keys(override: str) -> tuple[str, ...]:
    """The dotted keys of a dict-valued override, as Hydra parses its value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    def flat(d: dict, prefix: str = "") -> list[str]:
        return [
            k
            for key, v in d.items()
            for k in (flat(v, f"{prefix}{key}.") if isinstance(v, dict) else [f"{prefix}{key}"])
        ]

    value = OverridesParser.create().parse_overrides([override])[0].value()
    return tuple(flat(value)) if isinstance(value, dict) else ()


@functools.cache
def _note_once(message: str) -> None:
    log.info("%s", message)


def dense_spec_of(cfg: DictConfig, data_digest: str) -> dict:
    """What determines the dense run of ``cfg`` (see cache.dense_spec): nothing about pruning.

    ``data_digest`` is the loaded datamodule's ``data_digest()``: the identity of the data
    itself, which the config that names it does not fix (files in ``paths.data_dir`` change)."""
    from prune_exp.store.dense_cache import dense_spec, file_sha256

    def container(key: str) -> dict:
        out = OmegaConf.to_container(cfg[key], resolve=True)
        assert isinstance(out, dict)
        return out

    return dense_spec(
        data={**container("data"), "digest": data_digest},
        model=hashed_model(container("model")),
        optim=container("optim"),
        epochs=cfg.dense.epochs,
        iterations=cfg.dense.get("iterations"),
        seed=cfg.seed,
        precision=cfg.trainer.precision,
        world_size=world_size(cfg.trainer),
        loss=TASKS[cfg.task.name].loss,
        weights_sha256=file_sha256(Path(cfg.dense.weights)) if cfg.dense.weights else None,
        rewind_sha256={int(e): file_sha256(Path(f)) for e, f in (cfg.dense.get("rewind_weights") or {}).items()},
    )


def hashed_model(model: dict) -> dict:
    """The model config as the hashes see it: a key added later (``init``, ``dropout``) only where
    it is not its default, so the dense runs and job dirs from before it existed keep their hashes."""
    return {k: v for k, v in model.items() if not (k in LATER_MODEL_KEYS and v == LATER_MODEL_KEYS[k])}


def hashed_retrain(retrain: dict) -> dict:
    """The strategy as the fingerprint sees it: without the report's names for it (a new label
    does not make a finished job another one), and the keys added later only where they are
    not their default, so the job dirs and job-cache entries from before them keep their hashes."""
    return {k: v for k, v in retrain.items() if k not in STYLE_KEYS and not (k in LATER_KEYS and v == LATER_KEYS[k])}


def config_fingerprint(cfg: DictConfig) -> str:
    """A hash of everything that decides a job's results: the config without ``paths``, the
    Hydra settings, the progress bar, the tracker (``logger``), ``job_cache`` and the report's
    names for the strategy (a new label does not make a finished job another one). A job dir
    belongs to one fingerprint (resume)."""
    import hashlib
    import json

    keep = [k for k in cfg if k not in OUTSIDE_IDENTITY]
    tree = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keep), resolve=True)
    assert isinstance(tree, dict)
    tree.get("trainer", {}).pop("progress_bar", None)
    tree["model"] = hashed_model(tree.get("model", {}))
    tree["retrain"] = hashed_retrain(tree.get("retrain", {}))
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run(cfg: DictConfig) -> float:
    """Build the job's objects from ``cfg`` and run it; return the final val score."""
    from prune_exp.job.spine import run_job

    return run_job(experiment_of(cfg))


def experiment_of(cfg: DictConfig, rc: RunConfig | None = None) -> Experiment:
    """The job's objects, built from its composed config (fused.group trains several together);
    ``rc``: its RunConfig if the preflight made it (paths unresolved), else made from ``cfg``."""
    from prune_exp.job.experiment import Experiment  # heavy imports (torch, Lightning) start here
    from prune_exp.models.init import build_net

    hc = HydraConfig.get() if HydraConfig.initialized() else None
    overrides = list(hc.overrides.task) if hc else []
    rc = to_run_config(cfg, overrides=overrides) if rc is None else with_paths(rc, cfg)
    multirun = hc is not None and hc.mode == RunMode.MULTIRUN
    progress = rc.trainer.progress_bar
    if progress is None:
        progress = sys.stderr.isatty() and not multirun
    dm = instantiate_at("data", cfg.data, data_dir=rc.paths.data_dir, shuffle_seed=rc.seed)
    tracker = None
    if OmegaConf.select(cfg, "logger._target_"):
        from prune_exp.job.tracking import Tracker, flat_config

        hparams = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
        assert isinstance(hparams, dict)
        tracker = Tracker.of(cfg.logger, flat_config(hparams))
    return Experiment(
        cfg=rc,
        datamodule=dm,
        build_net=lambda: build_net(cfg.model, dm.input_shape, dm.num_classes),
        criterion=instantiate_at("prune.criterion", cfg.prune.criterion),
        structure=instantiate_at("structure", cfg.structure),
        dense_spec=functools.partial(dense_spec_of, cfg),  # completed by the data digest once it is loaded
        names={
            g: (hc.runtime.choices.get(g) if hc else None) or OmegaConf.select(cfg, f"{g}._target_")
            for g in ("data", "model")
        },
        job_dir=Path(rc.paths.output_dir),
        overrides=overrides,
        progress_bar=progress,
        fingerprint=config_fingerprint(cfg),
        tracker=tracker,
    )


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="run")
def main(cfg: DictConfig) -> float:
    """One job. In a multirun a failed job is recorded (status.json, the log, the report) and
    the sweep goes on with the others; the sweep's exit status says that a job failed."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun and "Joblib" in str(OmegaConf.select(HydraConfig.get(), "launcher._target_")):
        exit_with_parent()  # a local worker: end with the command that started it
    with signals_interrupt():
        try:
            return run(cfg)
        except PruneExpError as e:
            # The user's input or files, not our bug: one line, no traceback (status.json has it too).
            log.error("%s", e)
            if not multirun:
                sys.exit(f"prune-exp: {e}")
        except Exception as e:
            full = disk_full(e, [(k, str(OmegaConf.select(cfg, k))) for k in ("paths.output_dir", "paths.cache_dir")])
            if full is None and not multirun:
                raise
            if full is None:
                log.exception("the job failed")
                return float("nan")
            # The machine's state, not our bug: one line (status.json has the error too). The log
            # file is likely on the full disk: logging must not print its own traceback for it.
            raising, logging.raiseExceptions = logging.raiseExceptions, False
            try:
                log.error("%s", full)
            finally:
                logging.raiseExceptions = raising
            if not multirun:
                sys.exit(f"prune-exp: {full}")
    return float("nan")


def check_override_syntax(args: list[str]) -> None:
    """ConfigError for an override Hydra would choke on with a traceback (``=5``: no key)."""
    for arg in args:
        if not arg.startswith("-") and "=" in arg and not arg.lstrip("+~").split("=", 1)[0]:
            raise ConfigError(f"the override {arg!r} has no key; allowed: key=value, group=option or +key=value")


DRY_RUN = "hydra.sweeper.dry_run=true"  # what ``-m ... --cfg job`` becomes


def dry_run_args(args: list[str]) -> list[str]:
    """``-m ... --cfg job`` (Hydra takes one mode at a time) as the sweep's dry run (``DRY_RUN``:
    every job composed, checked and listed, nothing written), in every spelling argparse takes
    (``--cfg job``, ``--cfg=job``, ``-c job``, ``-cjob``, ``--cf job``); ``--resolve`` and
    ``--package``, which only shape a printed config, are dropped. ConfigError for ``--cfg``
    with anything but ``job``."""
    if not {"-m", "--multirun"} & set(args):
        return args
    out, i, dry = [], 0, False
    while i < len(args):
        a = args[i]
        flag, eq, attached = a.partition("=")
        short = a.startswith("-c") and len(a) > 2 and a[:3] not in ("--c", "-cp", "-cn", "-cd")  # -cjob, not -cd
        if flag in ("--cf", "--cfg", "-c") or short:
            value = attached if eq else a[2:] if flag not in ("--cf", "--cfg", "-c") else None
            if value is None:
                value, i = (args[i + 1] if i + 1 < len(args) else ""), i + 1
            if value != "job":
                raise ConfigError(
                    f"-m with --cfg {value!r}: a sweep has no one config to print; allowed: -m ... --cfg job "
                    "(the sweep's dry run: every job composed, checked and listed), or --cfg without -m"
                )
            out.append(DRY_RUN)
            dry = True
        elif a in ("--package", "-p"):
            i += 1  # (with its value)
        elif a != "--resolve" and not a.startswith("--package="):
            out.append(a)
        i += 1
    if dry and any(a.startswith("hydra/sweeper=") and a != "hydra/sweeper=prune_exp" for a in out):
        raise ConfigError("-m with --cfg (a dry run) needs hydra/sweeper=prune_exp, the default")
    return out if dry else args


def atomic_hydra_files() -> None:
    """Hydra's own files of a job (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``)
    written atomically, as every file of ours: a full disk or a kill leaves a job dir its old
    files or the new ones, never a cut one. (Hydra writes them in place, through this one
    function of its module, in ``run_job``.)"""
    import hydra.core.utils

    from prune_exp.store.atomic import write_text

    def save_config(cfg: Any, filename: str, output_dir: Path) -> None:
        write_text(Path(output_dir) / filename, OmegaConf.to_yaml(cfg))

    hydra.core.utils._save_config = save_config


def _exit_status() -> int | str | None:
    """Run :func:`main` as the command does; its exit status (a str: printed, status 1)."""
    try:
        with signals_interrupt():  # for the preflight and the report too, not only the jobs
            atomic_hydra_files()
            sys.argv = [sys.argv[0], *dry_run_args(sys.argv[1:])]
            check_override_syntax(sys.argv[1:])
            main()
        return sweep_status()
    except ConfigError as e:
        return f"prune-exp: config error: {e}"
    except Interrupted as e:
        print(f"prune-exp: interrupted ({e}); {resume_hint()}", file=sys.stderr)
        return e.exit_code
    except SystemExit as e:
        return e.code


def cli() -> None:
    """The ``prune-exp`` command: :func:`main`, then a fast exit.

    After a training run, tearing the interpreter down (freeing torch's and Lightning's
    thousands of modules and objects) takes ~1.5 s on a 2-core machine, on every command and
    in every sweep. Nothing of ours needs it. What Python's own exit does before the teardown
    is done here in the same order: wait for the other threads and run the thread-exit hooks
    (``threading._shutdown``: e.g. joblib's executor stops its workers there), then the
    atexit handlers (logging's flush, multiprocessing's child joins, temp-dir cleanup). Every
    file we write is closed explicitly; stdout/stderr are flushed; then the process exits
    with main's status."""
    code = _exit_status()
    if isinstance(code, str):  # sys.exit("message"): printed, status 1, as the interpreter would
        print(code, file=sys.stderr)
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    cli()
