"""A fused group and the job cache: a job's key is locked from its restore through its training
to its publish, on the fused path as on the unfused one, so two groups that need one job train
it once; and a group takes its keys' locks in one global order."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from helpers import job_config
from lightning.pytorch.callbacks import Callback

from prune_exp.app.run import experiment_of
from prune_exp.job.spine import run_jobs
from prune_exp.store.columns import VOLATILE
from prune_exp.store.files import RECORDS_FILE, STATUS_FILE
from prune_exp.store.records import read_records

SWEEP = ["debug=fast", "efficiency.measure_speed=false", "prune.schedule=iterative", "prune.rate=0.5"]
SWEEP += ["prune.sparsity=0.75", "retrain=lr_rewind"]


def _experiment(tmp: Path, data: Path, job: str, seed: int = 0):
    return experiment_of(job_config(tmp, data, [*SWEEP, f"seed={seed}"], job=job))


class StartsOther(Callback):
    """When the group's training starts: the other group starts in a thread, and this one waits
    ``seconds`` (the other would train meanwhile, were the key not locked)."""

    def __init__(self, other: threading.Thread, seconds: float = 3.0) -> None:
        self.other, self.seconds = other, seconds

    def on_train_start(self, trainer, pl_module) -> None:
        self.other.start()
        self.other.join(self.seconds)


def test_two_fused_groups_that_need_one_job_at_once_train_it_once(tmp_path: Path, data_dir: Path) -> None:
    first, second = _experiment(tmp_path, data_dir, "a"), _experiment(tmp_path, data_dir, "b")
    got: dict[str, object] = {}

    def run_second() -> None:
        try:
            got["values"] = run_jobs([second], tmp_path / "log_b")
        except BaseException as e:
            got["error"] = e

    other = threading.Thread(target=run_second)
    values = run_jobs([first], tmp_path / "log_a", [StartsOther(other)])
    other.join()
    assert "error" not in got, got.get("error")
    assert got["values"] == values
    a, b = (json.loads((tmp_path / d / STATUS_FILE).read_text()) for d in ("a", "b"))
    assert "job_cached" not in a and b["job_cached"] and b["state"] == "done"  # the second restored it
    skip = {*VOLATILE, "job_dir", "overrides"}
    rows_a, rows_b = (read_records(tmp_path / d / RECORDS_FILE) for d in ("a", "b"))
    assert rows_a[-1]["fused_group"] is not None
    assert [{k: v for k, v in r.items() if k not in skip} for r in rows_a] == [
        {k: v for k, v in r.items() if k not in skip} for r in rows_b
    ]


def test_a_group_takes_its_keys_locks_in_sorted_order(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prune_exp.job import spine
    from prune_exp.store.job_cache import JobCache

    taken: list[str] = []
    real = JobCache.lock

    def lock(self, key):
        taken.append(key)
        return real(self, key)

    monkeypatch.setattr(JobCache, "lock", lock)
    exps = [_experiment(tmp_path, data_dir, f"j{s}", seed=s) for s in (3, 1, 2)]
    for e in exps:
        e.set_up()
    with spine.job_cache_locks(exps) as caches:
        keys = [caches[id(e)][1] for e in exps]
    assert taken == sorted(keys) and len(set(keys)) == 3
