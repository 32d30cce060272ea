"""Bad files and reused dirs fail at start with one line, and leave earlier results intact:
a job dir of another config, a damaged dense cache, a pickle planted where a checkpoint or
a cache file should be, an output dir that cannot be written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import composed, finished_root, run_in_process, snapshot

from prune_exp.app.preflight import check_job
from prune_exp.app.run import dense_spec_of
from prune_exp.store.dense_cache import DenseCache, spec_hash

pytestmark = pytest.mark.slow

SMALL = ["debug=fast", "dense.epochs=3", "retrain.budget=2"]


class Payload:
    """Unpickling this runs code (touches a file): what a planted malicious file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def fails_cleanly(root: Path, args: list[str], message: str) -> str:
    code, err = run_in_process(root, args)
    assert code != 0, err[-2000:]
    assert message in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with one finished job in outputs/one (and its dense run in the cache)."""
    return finished_root(tmp_path_factory.mktemp("root"), SMALL)


def test_a_job_dir_of_another_config_is_refused_before_anything_is_written(finished: Path) -> None:
    before = snapshot(finished)
    fails_cleanly(finished, [*SMALL, "seed=1", "hydra.run.dir=outputs/one"], "already holds a job of another config")
    assert snapshot(finished) == before


def test_a_damaged_cache_file_is_refused_before_training(finished: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    root.mkdir()
    for rel, data in snapshot(finished).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (final,) = root.glob("outputs/cache/dense/*/epoch_0003.safetensors")
    final.write_bytes(final.read_bytes()[:-100])  # truncated
    before = snapshot(root)
    fails_cleanly(root, [*SMALL, "retrain=finetune", "hydra.run.dir=outputs/two"], "epoch_0003.safetensors is corrupt")
    assert snapshot(root) == before and not (root / "outputs/two").exists()


def test_a_pickle_planted_as_the_dense_runs_checkpoint_is_refused_not_run(tmp_path: Path) -> None:
    with composed(SMALL) as cfg:
        partial = DenseCache(tmp_path / "outputs/cache").partial(spec_hash(dense_spec_of(cfg, check_job(cfg).digest)))
    partial.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"state_dict": Payload(marker)}, partial / "resume.ckpt")
    err = fails_cleanly(tmp_path, [*SMALL, "hydra.run.dir=outputs/job"], "cannot resume from")
    assert "resume.ckpt: it is not a checkpoint prune-exp wrote" in err
    assert not marker.exists()
    status = json.loads((tmp_path / "outputs/job/status.json").read_text())
    assert status["state"] == "failed" and "cannot resume" in status["error"]


def test_a_pickle_planted_as_a_jobs_checkpoint_is_refused_not_run(finished: Path, tmp_path: Path) -> None:
    job = finished / "outputs" / "planted"
    job.mkdir()
    status = json.loads((finished / "outputs/one/status.json").read_text())
    (job / "status.json").write_text(json.dumps({**status, "state": "running"}))
    marker = tmp_path / "pwned"
    torch.save({"state_dict": Payload(marker)}, job / "resume.ckpt")
    fails_cleanly(finished, [*SMALL, "hydra.run.dir=outputs/planted"], "cannot resume from")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("hydra.run.dir=outputs/blocker/job", "hydra.run.dir="),
        ("paths.cache_dir=/proc/prune_exp_cache", "paths.cache_dir='/proc/prune_exp_cache' cannot be written"),
    ],
)
def test_an_output_dir_that_cannot_be_written_is_refused(tmp_path: Path, arg: str, message: str) -> None:
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs/blocker").write_text("a file where a directory would go")
    before = snapshot(tmp_path)
    err = fails_cleanly(tmp_path, [*SMALL, arg], message)
    assert "cannot be written" in err and "allowed: a writable directory" in err
    assert snapshot(tmp_path) == before
