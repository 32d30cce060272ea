"""Session fixtures; the helpers they share with tests live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the session, so MNIST-1D is generated once."""
    return tmp_path_factory.mktemp("data")


TRACKERS = ("tensorboard", "wandb", "mlflow")


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, int], Path]]:
    """One real 6-job sweep that several files read: each tracker (test_trackers.py) x two
    seeds, two rounds each, every round's weights kept (test_round_artifacts.py). Returns the
    root and (logger, seed) -> job dir."""
    import json

    from helpers import run_in_process

    from prune_exp.store.records import read_records

    root = tmp_path_factory.mktemp("small_sweep")
    sweep = root / "sweep"
    # job_cache=false: the tracker is not part of a job's key, so the 2nd and 3rd tracker of a seed
    # would get the 1st one's job from the cache (and only its records, test_job_cache.py)
    overrides = ["debug=fast", "name=trk", "trainer.log_every_n_steps=1", "efficiency.measure_speed=false"]
    overrides.append("job_cache=false")
    rounds = ["prune.schedule=iterative", "prune.rate=0.5", "prune.sparsity=0.75", "artifacts.every_round=true"]
    sweep_over = [f"logger={','.join(TRACKERS)}", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    code, err = run_in_process(root, ["-m", *overrides, *rounds, *sweep_over])  # no new process: ~7 s less
    assert code == 0, err[-3000:]
    jobs = {}
    for d in sweep.iterdir():
        if (d / "records.jsonl").exists():
            ov = json.loads((d / "status.json").read_text())["overrides"]
            logger = next(o for o in ov if o.startswith("logger=")).removeprefix("logger=")
            jobs[(logger, read_records(d / "records.jsonl")[0]["seed"])] = d
    assert set(jobs) == {(lg, s) for lg in TRACKERS for s in (0, 1)}
    return root, jobs
