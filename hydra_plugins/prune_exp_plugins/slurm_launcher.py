"""``hydra/launcher=slurm``: Hydra's submitit SLURM launcher, submitting a big sweep in seconds.

submitit pickles each job of an array into a file of its own before the one ``sbatch``. Hydra's
launcher hands it, for every job, itself (the sweep's config, its config loader) and a deep
copy of Hydra's global state (``Singleton.get_state()``, the ConfigStore with every schema):
~40 ms a job, 40 s before a 1,000-job sweep is submitted. Here the launcher and that state are
pickled once, into the sweep's submitit folder, and each job's pickle holds a small
:class:`SlurmTask` that names that file, with the job's overrides. On the node the task loads
the file (once per process) and runs the job as Hydra's launcher does (its ``__call__``); a
requeue (timeout, preemption) checkpoints the same small task.

Hydra imports every plugin module when it starts, so this one stays light.
"""

import logging
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

SHARED_FILE = "launcher.pkl"  # in the sweep's submitit folder: the launcher and Hydra's state
_LOADED: dict[str, tuple[Any, dict]] = {}  # in a task's process: shared file -> (launcher, Hydra's state)


class SlurmTask:
    """One job of the array: the path of the shared pickle and nothing else."""

    def __init__(self, shared: str) -> None:
        self.shared = shared

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str) -> Any:
        from prune_exp.app.run import atomic_hydra_files

        atomic_hydra_files()  # as on the machine that submitted it
        if self.shared not in _LOADED:
            with open(self.shared, "rb") as f:
                _LOADED[self.shared] = pickle.load(f)
        launcher, state = _LOADED[self.shared]
        return launcher(sweep_overrides, job_dir_key, job_num, job_id, state)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeued: the same task with the same arguments (the job resumes from its checkpoint)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra's submitit launch, with the launcher and Hydra's state pickled once."""
        import cloudpickle
        import submitit

        from prune_exp.errors import LaunchError

        assert self.config is not None and len(job_overrides) > 0
        try:
            executor = self._executor()
        except Exception as e:  # submitit finds no SLURM here (no srun, no sbatch)
            raise LaunchError(
                f"hydra/launcher={self._EXECUTOR}: {_first_line(e)}; allowed: a machine with SLURM's commands"
            ) from e
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}"))
        shared = Path(str(self.params["submitit_folder"]).replace("%j", "shared")) / SHARED_FILE
        shared.parent.mkdir(parents=True, exist_ok=True)
        tmp = shared.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:  # by value, as submitit pickles: Hydra's task function is a closure
            cloudpickle.dump((self, Singleton.get_state()), f)
        tmp.replace(shared)  # a task never reads half a file
        try:
            jobs = executor.map_array(SlurmTask(str(shared)), *zip(*job_params, strict=True))
        except Exception as e:  # sbatch refused the array: its own words
            raise LaunchError(
                f"the SLURM submission failed: {_first_line(e)}; check that sbatch reaches the cluster (sinfo) and "
                "hydra.launcher's partition, account and limits"
            ) from e
        assert all(isinstance(j, submitit.Job) for j in jobs)
        return [j.results()[0] for j in jobs]

    def _executor(self) -> Any:
        """submitit's executor with this launcher's parameters, as Hydra's launcher makes it."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        init_keys = {"max_num_timeout", "submitit_folder"}
        init = {f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k == "max_num_timeout"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=self.params["submitit_folder"], **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k not in init_keys}
        )
        return executor


def _first_line(e: BaseException) -> str:
    """An error in a few words: its first line that says something."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return " ".join((lines[0] if lines else type(e).__name__).split())[:300]
