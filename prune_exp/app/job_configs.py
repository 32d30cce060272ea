"""Every job's config of a sweep, as Hydra's launchers compose it, at sweep scale.

Hydra composes a job (``ConfigLoader.load_sweep_config``) in two steps. First the job's group
overrides (``retrain=finetune``) and every Hydra override (the command line's and the job's)
make a defaults list whose files are merged: ~0.1 s a job here. Then its value overrides
(``seed=3``) are set on the result by Hydra's own ``_apply_overrides_to_config``, and
``hydra.overrides.task`` and ``hydra.job.override_dirname`` list them.

Jobs that share their group and Hydra overrides share the first step, so it is done once per
distinct set of them, by the running app's own config loader: ``--config-dir``,
``--config-path``, ``--config-name`` and ``hydra.searchpath`` (on the command line or in the
primary config) compose exactly as in Hydra. The result is kept pickled: a job's config is
unpickled from it (~4x faster than ``copy.deepcopy``) and gets its values by Hydra's code,
for its checks (:meth:`JobConfigs.checked`: without the ``hydra`` node, and typed) and for its
launch (:meth:`JobConfigs.config`: what ``load_sweep_config`` returns, hydra node included;
tests/test_job_configs.py compares the two).

The typed RunConfig is made the same way: once per distinct set, then each job's values set on
a copy (each value as the job's composed config validated it), unless a value cannot be set
that way (a new key, a deletion, a key outside the schema's fields), when the job is typed
from its config in full. Every job is still checked in full (config.check_config).
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, SupportsIndex

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from prune_exp.config import RunConfig


@dataclass
class _Base:
    """One composition of a set of group and Hydra overrides, pickled, and its typed config."""

    full: bytes  # as load_sweep_config returns it for just those overrides
    app: bytes  # the same without the hydra node (what the checks read)
    # run.typed_run_config of it (paths unresolved); None when a value interpolates another
    # (a job's override of the one would change the other): its jobs are typed in full
    typed: RunConfig | None


@dataclass(frozen=True)
class _Job:
    """A job's overrides, parsed and sorted into Hydra's two steps."""

    composed: tuple[str, ...]  # the first step's: group choices and Hydra's own settings
    values: tuple[Override, ...]  # the second step's, in their order
    task: tuple[Override, ...]  # every override but Hydra's (hydra.overrides.task), in order


class JobConfigs:
    """The configs of a sweep's jobs, by their overrides, composed by ``loader`` against the
    sweep's ``master`` config (Hydra's multirun config) as its launchers would."""

    def __init__(self, loader: ConfigLoaderImpl, master: DictConfig) -> None:
        self.loader, self.master = loader, master
        self._hydra_overrides = list(OmegaConf.to_container(master.hydra.overrides.hydra))
        self._bases: dict[tuple[str, ...], _Base] = {}
        self._parsed: dict[str, Override] = {}
        self._repos: dict[tuple[str, ...], Any] = {}  # the group repository, by Hydra overrides
        self._kinds: dict[tuple[str, tuple[str, ...]], bool] = {}  # _composed, memoized
        self._parser = OverridesParser.create()

    def checked(self, overrides: Sequence[str]) -> tuple[DictConfig, RunConfig]:
        """The job's config without ``hydra`` and its typed, checked RunConfig; or the job's
        first error (as Hydra's composition or config.check_config raises it)."""
        from prune_exp.app.run import finish_run_config, typed_run_config

        job = self._job(overrides)
        base = self._base(job.composed)
        config = pickle.loads(base.app)
        ConfigLoaderImpl._apply_overrides_to_config(list(job.values), config)
        typed = _with_values(base.typed, job.values, config) if base.typed is not None else None
        if typed is None:  # a value the fast path cannot set: the job typed from its config in full
            typed = typed_run_config(config, resolve_paths=False)
        return config, finish_run_config(typed, overrides)

    def config(self, overrides: Sequence[str]) -> DictConfig:
        """The job's whole config: what ``loader.load_sweep_config(master, overrides)`` returns."""
        job = self._job(overrides)
        config = pickle.loads(self._base(job.composed).full)
        ConfigLoaderImpl._apply_overrides_to_config(list(job.values), config)
        names = config.hydra.job.config.override_dirname
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.overrides.task = [o.input_line for o in job.task]
            config.hydra.job.override_dirname = get_overrides_dirname(
                overrides=list(job.task),
                kv_sep=names.kv_sep,
                item_sep=names.item_sep,
                exclude_keys=names.exclude_keys,
            )
        OmegaConf.copy_cache(from_config=self.master, to_config=config)  # ${now:} as the sweep's
        return config

    def _job(self, overrides: Sequence[str]) -> _Job:
        parsed = [self._parse(o) for o in overrides]
        hydra = tuple(o.input_line for o in parsed if o.is_hydra_override())
        repo = self._repos.get(hydra)
        if repo is None:  # the groups as the job sees them: hydra.searchpath may add some
            _, repo = self.loader._parse_overrides_and_create_caching_repo(
                self.master.hydra.job.config_name, self._hydra_overrides + list(hydra)
            )
            self._repos[hydra] = repo
        composed = tuple(o.input_line for o in parsed if self._composed(o, hydra, repo))
        values = tuple(o for o in parsed if o.input_line not in composed)
        return _Job(composed, values, tuple(o for o in parsed if not o.is_hydra_override()))

    def _composed(self, override: Override, hydra: tuple[str, ...], repo: Any) -> bool:
        """:func:`_composed`, once per distinct override and set of Hydra overrides."""
        key = (override.input_line, hydra)
        if key not in self._kinds:
            self._kinds[key] = _composed(override, repo)
        return self._kinds[key]

    def _parse(self, override: str) -> Override:
        """``override`` parsed (each distinct one once: a sweep repeats them)."""
        parsed = self._parsed.get(override)
        if parsed is None:
            parsed = self._parsed[override] = self._parser.parse_overrides([override])[0]
        return parsed

    def _base(self, composed: tuple[str, ...]) -> _Base:
        from prune_exp.app.run import typed_run_config

        base = self._bases.get(composed)
        if base is None:
            full = self.loader.load_sweep_config(self.master, list(composed))
            app = OmegaConf.masked_copy(full, [k for k in full if k != "hydra"])
            OmegaConf.set_struct(app, True)
            typed = None if _interpolates(app) else typed_run_config(app, resolve_paths=False)
            base = self._bases[composed] = _Base(pickle.dumps(full), pickle.dumps(app), typed)
        return base


def _composed(override: Override, repo) -> bool:
    """Whether Hydra's first step (the defaults list) needs ``override``: a config group's
    choice, or a setting of Hydra itself (which may change where the groups are found)."""
    if override.is_hydra_override() or override.package is not None:
        return True
    return not isinstance(override.value(), dict) and repo.group_exists(override.key_or_group)


def _interpolates(node, skip: tuple[str, ...] = ("paths", "logger")) -> bool:
    """Whether a value under ``node`` is an interpolation, leaving out the top-level ``skip``
    (``paths`` stays unresolved in the typed config, ``logger`` is not typed)."""
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        if key in skip:
            continue
        if OmegaConf.is_interpolation(node, key):
            return True
        child = node._get_node(key)
        if OmegaConf.is_config(child) and not child._is_none() and not child._is_missing() and _interpolates(child, ()):
            return True
    return False


def _with_values(typed: RunConfig, values: Sequence[Override], config: DictConfig) -> RunConfig | None:
    """A copy of ``typed`` with each of ``values`` set as ``config`` (the job's composed config)
    holds it; None if one of them is not a plain assignment to a field of a schema. Copied on
    write: the dataclasses on the way to a set field, and those finish_run_config sets."""
    out = copy.copy(typed)
    out.prune = copy.copy(typed.prune)  # prune.rounds sets prune.sparsity
    copied = {id(out), id(out.prune)}
    for o in values:
        key = o.key_or_group
        if o.is_add() or o.is_force_add() or o.is_delete() or o.package is not None:
            return None
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            child = getattr(node, name, None)
            if not dataclasses.is_dataclass(child):
                return None
            if id(child) not in copied:
                child = copy.copy(child)
                copied.add(id(child))
                setattr(node, name, child)
            node = child
        if leaf not in {f.name for f in dataclasses.fields(node)}:
            return None
        value = OmegaConf.select(config, key, throw_on_missing=False)
        setattr(node, leaf, OmegaConf.to_object(value) if OmegaConf.is_config(value) else value)
    return out


class ComposedLoader(ConfigLoader):
    """Hydra's config loader, except that a job of the sweep comes from ``jobs`` (composed and
    checked by the preflight) instead of being composed again: what a launcher that composes
    through ``hydra_context.config_loader`` gets (Hydra's basic launcher, prune_exp's fused
    ones). Pickled (a worker process, a SLURM node) it is Hydra's own loader again: the jobs
    stay here, and a job that runs elsewhere is composed there."""

    def __init__(self, loader: ConfigLoaderImpl, jobs: JobConfigs) -> None:
        self.loader, self.jobs = loader, jobs

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return _itself, (self.loader,)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        if master_config is self.jobs.master:
            return self.jobs.config(sweep_overrides)
        return self.loader.load_sweep_config(master_config, sweep_overrides)

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.loader.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.compute_defaults_list(*args, **kwargs)


def _itself(x: Any) -> Any:
    """What a pickled ComposedLoader becomes: the loader it wraps."""
    return x
