"""``hydra/sweeper=prune_exp`` (the default): Hydra's basic sweeper, with every job composed once.

Hydra's basic sweeper composes every job to check that it can (``validate_batch_is_legal``),
then its launcher composes it again to run it: ~0.1 s a job, minutes for a sweep of a thousand.
This one expands the sweep as the basic sweeper does (the same override grammar,
``hydra.sweeper.params``, ``max_batch_size``), composes and checks every job in the preflight
(prune_exp.app.sweep_preflight) before the first starts, and hands the composed configs to the
launcher through the config loader it composes with (job_configs.ComposedLoader). With
``dry_run`` (``prune-exp -m ... --cfg job``) it lists the jobs and stops: nothing is trained
or written.

Hydra imports every plugin module when it starts, so this one stays light. (No ``from
__future__ import annotations``: Hydra executes this module outside sys.modules, where
dataclasses cannot resolve string annotations.)
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035  # the schema's types, as Hydra's

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class PruneExpSweeperConf:
    _target_: str = "hydra_plugins.prune_exp_plugins.sweeper.PruneExpSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045  # jobs handed to the launcher at once; null: all
    params: Dict[str, str] = field(default_factory=dict)  # noqa: UP006  # more sweep overrides (experiment files)
    dry_run: bool = False  # compose, check and list every job; train and write nothing


ConfigStore.instance().store(group="hydra/sweeper", name="prune_exp", node=PruneExpSweeperConf)


class PruneExpSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: Optional[int] = None,  # noqa: UP045
        params: Optional[Dict[str, str]] = None,  # noqa: UP006, UP045
        dry_run: bool = False,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.dry_run = dry_run
        self.jobs: Any = None  # job_configs.JobConfigs: the sweep's jobs, composed once

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from prune_exp.app.job_configs import ComposedLoader, JobConfigs

        self.jobs = JobConfigs(hydra_context.config_loader, config)
        composed = HydraContext(ComposedLoader(hydra_context.config_loader, self.jobs), hydra_context.callbacks)
        super().setup(hydra_context=composed, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:  # noqa: UP006
        """The preflight of every job; then (unless a dry run) the basic sweeper's loop: the
        sweep's config saved, each batch of jobs handed to the launcher."""
        from prune_exp.app.sweep_preflight import check_sweep, print_dry_run, run_batches
        from prune_exp.store.sweep import expand

        assert self.config is not None and self.hydra_context is not None and self.launcher is not None
        self._check_settings()
        batches = expand([*self._parse_config(), *arguments], self.max_batch_size, self.hydra_context.config_loader)
        jobs = [job for batch in batches for job in batch]
        see = getattr(self.launcher, "see_job", None)  # the fused launchers keep their view of each job
        planned = check_sweep(self.config, jobs, self.jobs, dry_run=self.dry_run, on_job=see)
        if self.dry_run:
            from prune_exp.app.session import SESSION

            SESSION.dry_run = True  # (the report callback writes nothing)
            print_dry_run(planned, str(self.config.hydra.sweep.dir))
            return []
        return run_batches(self.config, batches, self.launcher)

    def _check_settings(self) -> None:
        """The sweeper's and the launcher's own settings (a launcher's ``check``), before any job:
        one line naming the key."""
        from prune_exp.app.preflight import preflight_errors
        from prune_exp.errors import ConfigError

        with preflight_errors():
            size = self.max_batch_size
            if size is not None and not (isinstance(size, int) and size >= 1):
                raise ConfigError(
                    f"hydra.sweeper.max_batch_size={size} is not allowed; allowed: null (every job at once) or an "
                    "integer >= 1 (the jobs handed to the launcher at once)"
                )
            check = getattr(self.launcher, "check", None)
            if check is not None:
                check()
