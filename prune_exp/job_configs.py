"""Every job's config of a sweep, for the preflight: as Hydra composes it, at sweep scale.

Hydra composes a job in two steps: its group overrides (``retrain=finetune``) make a defaults
list and merge those files (~0.1 s a job here), then its value overrides (``seed=3``) are set on
the result (ConfigLoaderImpl._apply_overrides_to_config). Jobs that share their group and
Hydra overrides share the first step, so it is done once per distinct set of them and each
job gets a copy with its own values set by Hydra's own code. The typed RunConfig is made the
same way: once per distinct set, then each job's values set on a copy (each value as the
job's composed config validated it), unless a value cannot be set that way (a new key, a
deletion, a key outside the schema's fields), when the job is typed from its config in full.
Every job is still checked in full (config.check_config).

The configs lack the ``hydra`` node: the checks do not read it (the ``hydra:`` resolver reads
the running sweep's HydraConfig, as during a plain composition).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from prune_exp.config import RunConfig


@dataclass
class _Base:
    """One composition of a set of group and Hydra overrides, and its typed config."""

    config: DictConfig  # without the hydra node
    # run.typed_run_config of it (paths unresolved); None when a value interpolates another
    # (a job's override of the one would change the other): its jobs are typed in full
    typed: RunConfig | None


class JobConfigs:
    """``of(overrides)`` is a job's ``(config, run_config)``: its composed config (without
    ``hydra``) and its typed, checked RunConfig, or raises the job's first error."""

    def __init__(self, config_name: str | None) -> None:
        self.config_name = config_name
        self._bases: dict[tuple[str, ...], _Base] = {}
        self._parser = OverridesParser.create()

    def of(self, overrides: list[str]) -> tuple[DictConfig, RunConfig]:
        from prune_exp.run import finish_run_config, typed_run_config

        parsed = self._parser.parse_overrides(overrides)
        loader = GlobalHydra.instance().config_loader()
        assert isinstance(loader, ConfigLoaderImpl)
        searchpath = any(o.key_or_group.startswith("hydra.searchpath") for o in parsed)  # other groups
        composed = tuple(o.input_line for o in parsed if searchpath or _composed(o, loader.repository))
        values = [o for o in parsed if o.input_line not in composed]
        base = self._bases.get(composed)
        if base is None:
            base = self._bases[composed] = self._compose(list(composed))
        config = copy.deepcopy(base.config)
        ConfigLoaderImpl._apply_overrides_to_config(values, config)
        typed = _with_values(base.typed, values, config) if base.typed is not None else None
        if typed is None:  # a value the fast path cannot set: the job typed from its config in full
            typed = typed_run_config(config, resolve_paths=False)
        return config, finish_run_config(typed)

    def _compose(self, overrides: list[str]) -> _Base:
        from hydra import compose

        from prune_exp.run import typed_run_config

        full = compose(config_name=self.config_name, overrides=overrides, return_hydra_config=True)
        config = OmegaConf.masked_copy(full, [k for k in full if k != "hydra"])
        OmegaConf.set_struct(config, True)
        typed = None if _interpolates(config) else typed_run_config(config, resolve_paths=False)
        return _Base(config, typed)


def _composed(override: Override, repo) -> bool:
    """Whether Hydra's first step (the defaults list) needs ``override``: a config group's
    choice, or a setting of Hydra itself (which may change where the groups are found)."""
    return override.is_hydra_override() or (
        not isinstance(override.value(), dict) and repo.group_exists(override.key_or_group)
    )


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


def _with_values(typed: RunConfig, values: list[Override], config: DictConfig) -> RunConfig | None:
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
