"""The ``_target_`` of every group that names a class (data, model, prune.criterion, structure,
the task's metrics): a typo is refused with the config key it came from, the target and what is
allowed, when the config is checked (Hydra's own error names the target only, when the job
builds it). :func:`instantiate_at` builds a node for the call sites: Hydra's error in one line
that names the key."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import fields
from typing import Any

from omegaconf import MISSING

from prune_exp.errors import ConfigError, PruneExpError

# config key -> its group in config.store.SCHEMAS (whose schemas name the built-in targets)
TARGET_KEYS = {"data": "data", "model": "model", "prune.criterion": "prune/criterion", "structure": "structure"}


def target_of(node: Any) -> str | None:
    """The ``_target_`` of a config node: a typed schema, a user's plain dict, or a DictConfig."""
    target = node.get("_target_") if hasattr(node, "get") else getattr(node, "_target_", None)
    return None if target is None or target == MISSING else str(target)


def locate_error(path: str) -> str | None:
    """Why ``path`` names no importable object, in a few words; None when it does."""
    parts = path.split(".")
    if not all(p.isidentifier() for p in parts):
        return "not an import path such as package.module.Class"
    for i in range(len(parts), 0, -1):  # the longest prefix that is a module
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
                continue  # no such module: a shorter prefix may be one
            return f"importing {module} failed: {e}"  # a module it imports is missing
        except Exception as e:  # the module itself is broken
            return f"importing {module} failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
        owner = module
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return f"{owner} has no {attr!r}"
            obj, owner = getattr(obj, attr), f"{owner}.{attr}"
        return None
    return f"no module named {parts[0]!r}; a module of your own must be on PYTHONPATH"


def builtin_targets(key: str) -> list[str]:
    """The ``_target_`` of every built-in option of ``key``: a group's (data, model, ...) or a
    metric's (``task.metrics.<name>``)."""
    from prune_exp.config.retrain import BUILTIN_RULES
    from prune_exp.config.store import SCHEMAS  # (store imports every schema module, this one's users)
    from prune_exp.config.task import TASKS

    if key.startswith("task.metrics."):
        found = [entry["_target_"] for task in TASKS.values() for entry in task.metrics.values()]
    elif key == "retrain.lr_rule":
        found = list(BUILTIN_RULES)
    else:
        schemas = SCHEMAS[TARGET_KEYS[key]].values()
        found = [next((f.default for f in fields(s) if f.name == "_target_"), MISSING) for s in schemas]
    return list(dict.fromkeys(t for t in found if isinstance(t, str) and t != MISSING))


def target_error(key: str, target: str | None, why: str | None) -> ConfigError:
    """The error for ``key``'s ``_target_``: not set (``target`` None), or not importable (``why``),
    with the nearest built-in target and what is allowed."""
    builtins = builtin_targets(key)
    allowed = f"one of {', '.join(builtins)}, or the import path of a class of your own"
    if target is None:
        return ConfigError(f"{key}._target_ is not set, so nothing can be built; allowed: {allowed}")
    near = difflib.get_close_matches(target, builtins, n=1, cutoff=0.9)
    hint = f"; did you mean {near[0]}?" if near else ""
    return ConfigError(f"{key}._target_={target!r} cannot be imported ({why}{hint}); allowed: {allowed}")


def check_targets(cfg: Any) -> None:
    """ConfigError for the first ``_target_`` of ``cfg`` (a RunConfig) that is missing or does not
    import: the groups' (data, model, prune.criterion, structure) and the metrics' a user adds,
    naming its key (``model._target_``)."""
    nodes: dict[str, Any] = {}
    for key in TARGET_KEYS:
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        nodes[key] = node
    rule = cfg.retrain.lr_rule
    if hasattr(rule, "get") and isinstance(rule.get("_target_"), str):  # (check_retrain: other values)
        nodes["retrain.lr_rule"] = rule
    for name, entry in (cfg.task.metrics or {}).items():
        if hasattr(entry, "get") and isinstance(entry.get("_target_"), str):  # (check_task: other entries)
            nodes[f"task.metrics.{name}"] = entry
    for key, node in nodes.items():
        target = target_of(node)
        why = locate_error(target) if target is not None else None
        if target is None or why is not None:
            raise target_error(key, target, why)


def instantiate_at(key: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)``; an error of ours raised while building it as
    it is, any other as a ConfigError naming ``key`` (a target that does not import, arguments
    that its class does not take), in one line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, PruneExpError):  # it names its own key or file
            raise e.__cause__ from None
        target = target_of(node)
        why = locate_error(target) if target is not None else None
        if target is None or why is not None:
            raise target_error(key, target, why) from None
        cause = e.__cause__ if e.__cause__ is not None else e
        reason = " ".join(f"{type(cause).__name__}: {cause}".split())[:300]
        raise ConfigError(
            f"{key}._target_={target!r} cannot be built ({reason}); allowed: the arguments {target} takes"
        ) from None
