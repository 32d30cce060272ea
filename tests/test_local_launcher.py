"""hydra/launcher=local: a sweep's jobs in parallel worker processes (Hydra's joblib launcher),
with the report written when they are done, as with the default launcher."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from helpers import run_cli

from prune_exp.store.records import read_records

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def joblib_launcher() -> None:
    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        reason = "hydra-joblib-launcher is not installed (a dependency in pyproject.toml)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)


def test_a_sweep_runs_in_parallel_workers_and_reports(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    res = run_cli(
        [
            "-m",
            "debug=fast",
            "retrain=finetune,lr_rewind",
            "seed=0,1",
            "hydra/launcher=local",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in res.stdout + res.stderr
    for num in range(4):
        assert json.loads((sweep / str(num) / "status.json").read_text())["state"] == "done"
        rows = read_records(sweep / str(num) / "records.jsonl")
        assert [r["round"] for r in rows] == [0, 1]
        assert {r["slurm_job_id"] for r in rows} == {None}
    for name in ("summary.md", "results.csv", "accuracy_vs_compression.png"):
        assert (sweep / name).stat().st_size > 0, name
