"""``hydra/launcher=fused``: the jobs of a sweep that share a round structure train together.

Hydra imports every plugin module when it starts, so this one stays light: the launcher's
schema and the class Hydra instantiates; the work is in prune_exp.app.fused_launch. (No
``from __future__ import annotations``: Hydra executes this module outside sys.modules,
where dataclasses cannot resolve string annotations.)
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.prune_exp_plugins.slurm_launcher import SlurmLauncher

# hydra.launcher.max_arms's default. A group starts once all its arms are set up (~50 ms an
# arm): at 64, a 1,000-job sweep's first job ran 12.5 s after the command, at 16 in under 10 s;
# and on a CPU 9 and 27 arms gained the same per step (docs/benchmarks.md).
MAX_ARMS = 16
# fused_slurm's groups: each a SLURM task of its own, started when the whole sweep is queued.
SLURM_MAX_ARMS = 64


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.prune_exp_plugins.fused_launcher.FusedLauncher"
    max_arms: int = MAX_ARMS  # the most jobs one group trains together; a larger group is split


ConfigStore.instance().store(group="hydra/launcher", name="prune_exp_fused", node=FusedLauncherConf)


class FusedLauncher(Launcher):
    def __init__(self, max_arms: int = MAX_ARMS) -> None:
        self.max_arms = max_arms
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def check(self) -> None:
        """ConfigError for a ``max_arms`` that groups nothing (the sweeper asks before any job)."""
        from prune_exp.errors import ConfigError

        if not (isinstance(self.max_arms, int) and self.max_arms >= 1):
            raise ConfigError(
                f"hydra.launcher.max_arms={self.max_arms} is not allowed; allowed: an integer >= 1 (the most jobs "
                "one group trains together)"
            )

    def see_job(self, overrides: Sequence[str], cfg: DictConfig, rc: Any) -> None:
        """The preflight's view of a job (hydra/sweeper=prune_exp): kept, not made again."""
        from prune_exp.app.fused_launch import see_job

        see_job(self, overrides, cfg, rc)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from prune_exp.app.fused_launch import launch

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        return launch(self, job_overrides, initial_job_idx)


class FusedSlurmLauncher(SlurmLauncher):
    """hydra/launcher=fused_slurm: the SLURM launcher (slurm_launcher.py: submitit's schema, SlurmQueueConf, and
    conf/hydra/launcher/slurm.yaml's values), one array task per fused group (a job that fuses
    with no other is a task of its own); requeued, a group resumes from its checkpoint. The
    schema is submitit's, closed to new keys: groups have at most SLURM_MAX_ARMS."""

    max_arms = SLURM_MAX_ARMS

    def see_job(self, overrides: Sequence[str], cfg: DictConfig, rc: Any) -> None:
        """As FusedLauncher.see_job."""
        from prune_exp.app.fused_launch import see_job

        see_job(self, overrides, cfg, rc)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # one array task (on the node)
        from prune_exp.app.fused_launch import run_task

        return run_task(self, *args, **kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from prune_exp.app.fused_launch import submit

        return submit(self, job_overrides, initial_job_idx, super().launch)
