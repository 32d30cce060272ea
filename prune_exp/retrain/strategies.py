"""Retraining strategies (Renda, Frankle & Carbin 2020) as data: a config resolved to a round plan.

A strategy (config.RetrainConfig, one YAML file in conf/retrain/) says three things: the
weights at round start, the LR during the round and how long it lasts. Every strategy spends
the same budget ``t`` after every round, except the controls:

=============  ===============================  ===================================  ======
strategy       weights at round start           LR during the round                  epochs
=============  ===============================  ===================================  ======
finetune       current (pruned) weights         constant (default: dense final LR)   t
weight_rewind  theta_{T-t} * m (dense run)      dense schedule, epochs T-t .. T      t
lr_rewind      current (pruned) weights         dense schedule, epochs T-t .. T      t
lottery        theta_0 * m                      full dense schedule                  T
reinit         fresh random init * m            full dense schedule                  T
none           current weights                  (no training)                        0
=============  ===============================  ===================================  ======

Positions (``rewind_to``, ``lr_from``) are in epochs or iterations (config/positions.py), and
a plan holds them as optimizer steps of the dense run. Past T a replayed schedule holds its
final LR.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from prune_exp.config import ConfigError, RetrainConfig, check_retrain, conf_dir
from prune_exp.config.positions import parse_position


@dataclass(frozen=True)
class RoundPlan:
    """What a strategy does in every round, in steps of the dense run."""

    strategy: str
    epochs: int  # of retraining per round
    weights: str  # config.WEIGHTS
    rewind_step: int | None  # the dense step whose weights are restored (weights == "rewind")
    lr: str  # config.LR_MODES
    lr_start_step: int  # the dense schedule's step at round start (lr == "replay")

    @property
    def trains(self) -> bool:
        return self.epochs > 0

    def dense_epochs_needed(self, steps_per_epoch: int) -> set[int]:
        """The dense run's epoch files this plan reads: the rewind point's, or epoch 0 when the
        point is inside an epoch (job/dense.replay_dense starts from the init)."""
        if self.rewind_step is None:
            return set()
        return {self.rewind_step // steps_per_epoch if self.rewind_step % steps_per_epoch == 0 else 0}


def plan_round(rt: RetrainConfig, dense_epochs: float, steps_per_epoch: int) -> RoundPlan:
    """The plan every round of ``rt`` follows, with T = ``dense_epochs`` of ``steps_per_epoch``
    steps (a fraction with dense.iterations: config.dense_length). ConfigError, naming the key,
    for parts that do not fit together or a position outside the dense run."""
    check_retrain(rt, dense_epochs)
    T, t = dense_epochs, rt.budget
    last = round(T * steps_per_epoch)
    if rt.duration == "full" and not float(T).is_integer():
        raise ConfigError(
            f"retrain.duration=full is not allowed with a dense run of {last} steps ({T:g} epochs of "
            f"{steps_per_epoch}); allowed: dense.iterations a multiple of {steps_per_epoch}, or a strategy "
            f"that retrains retrain.budget epochs ({rt.strategy} retrains the whole run, in whole epochs)"
        )

    def step(key: str) -> int | None:
        text = getattr(rt, key)
        if text is None:
            return None
        s = parse_position(text).step(T, t, steps_per_epoch)
        if not 0 <= s <= last:
            raise ConfigError(
                f"retrain.{key}={text} is not allowed; allowed: a position in the dense run, steps 0..{last} "
                f"(T={T:g} epochs of {steps_per_epoch} steps), but it is step {s}"
            )
        return s

    epochs = {"budget": t, "full": int(T), "none": 0}[rt.duration]
    return RoundPlan(rt.strategy, epochs, rt.weights, step("rewind_to"), rt.lr, step("lr_from") or 0)


def strategy_config(name: str, **values: object) -> RetrainConfig:
    """A strategy as a typed config: ``name`` is a built-in (conf/retrain/<name>.yaml) or the
    path of a user's YAML file over the same schema; ``values`` override its keys (``budget=30``)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else Path(conf_dir()) / "retrain" / f"{name}.yaml"
    if not path.is_file():
        allowed = ", ".join(builtin_strategies())
        raise ConfigError(f"retrain={name!r} is not a strategy; allowed: {allowed} or a YAML file")
    own = OmegaConf.load(path)
    own.pop("defaults", None)
    merged = OmegaConf.merge(OmegaConf.structured(RetrainConfig), own, values)
    rt = OmegaConf.to_object(merged)
    assert isinstance(rt, RetrainConfig)
    return rt


def builtin_strategies() -> list[str]:
    """The strategies prune_exp ships: the files of conf/retrain/."""
    return sorted(p.stem for p in (Path(conf_dir()) / "retrain").glob("*.yaml"))
