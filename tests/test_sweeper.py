"""hydra/sweeper=prune_exp (the default): every job of a sweep composed once on this machine and
checked before the first starts, the launcher running exactly those configs; a user's config
dir added by ``hydra.searchpath`` in a multirun; the dry run (``-m ... --cfg job``); and Hydra's
basic sweeper still running with its own per-job composition."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_in_process, snapshot, tiny_disk
from hydra._internal.config_loader_impl import ConfigLoaderImpl

from prune_exp.config import conf_dir
from prune_exp.store.records import read_records

pytestmark = pytest.mark.slow

FAST = ["debug=fast", "efficiency.measure_speed=false", "efficiency.export_csr=false"]


@pytest.fixture
def compositions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Every composition Hydra's config loader makes in this process (its overrides)."""
    made: list[list[str]] = []
    real = ConfigLoaderImpl._load_configuration_impl

    def counted(self, config_name, overrides, *args, **kwargs):
        made.append(list(overrides))
        return real(self, config_name, overrides, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "_load_configuration_impl", counted)
    yield made


def states(sweep: Path, jobs: int) -> list[str]:
    return [json.loads((sweep / str(n) / "status.json").read_text())["state"] for n in range(jobs)]


@pytest.mark.parametrize("launcher", ["basic", "fused"])
def test_every_job_is_composed_once_per_set_of_group_overrides(
    tmp_path: Path, compositions: list[list[str]], launcher: str
) -> None:
    """6 jobs of 2 strategies: besides Hydra's multirun config, one composition per strategy;
    the launcher runs the configs the preflight made (nothing composed again)."""
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, "retrain=finetune,lr_rewind", "seed=0,1,2", f"hydra/launcher={launcher}"]
    code, err = run_in_process(tmp_path, [*args, f"hydra.sweep.dir={sweep}"])
    assert code == 0, err[-3000:]
    assert states(sweep, 6) == ["done"] * 6
    per_job = [c for c in compositions if "seed=0,1,2" not in c]  # not Hydra's multirun config
    assert sorted(tuple(o for o in c if o.startswith(("retrain=", "seed="))) for c in per_job) == [
        ("retrain=finetune",),
        ("retrain=lr_rewind",),
    ]
    saved = [(sweep / str(n) / ".hydra" / "overrides.yaml").read_text() for n in range(6)]
    assert [s.count("seed=") for s in saved] == [1] * 6  # each job's own overrides, as Hydra records them


def test_local_workers_get_the_composed_configs(
    tmp_path: Path, compositions: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """hydra/launcher=local hands each worker its job's config: joblib's Parallel, run here in
    this process, composes nothing more than the preflight did."""
    import joblib

    class InProcess:
        def __init__(self, **kwargs: object) -> None:
            self.kwargs = kwargs

        def __call__(self, calls):
            return [f(*a, **kw) for f, a, kw in calls]

    monkeypatch.setattr(joblib, "Parallel", InProcess)
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, "retrain=finetune,lr_rewind", "seed=0,1", "hydra/launcher=local", "hydra.launcher.n_jobs=2"]
    code, err = run_in_process(tmp_path, [*args, f"hydra.sweep.dir={sweep}"])
    assert code == 0, err[-3000:]
    assert states(sweep, 4) == ["done"] * 4
    assert len([c for c in compositions if "seed=0,1" not in c]) == 2  # one per strategy


def test_a_config_dir_given_by_hydra_searchpath_runs_a_multirun(tmp_path: Path) -> None:
    """The issue's command: ``-m hydra.searchpath=[file://my_conf] retrain=my_lrr,finetune``."""
    mine = tmp_path / "my_conf" / "retrain"
    mine.mkdir(parents=True)
    lrr = (Path(conf_dir()) / "retrain" / "lr_rewind.yaml").read_text()
    (mine / "my_lrr.yaml").write_text(lrr.replace("strategy: lr_rewind", "strategy: my_lrr"))
    sweep = tmp_path / "sweep"
    args = ["-m", f"hydra.searchpath=[file://{mine.parent}]", *FAST, "retrain=my_lrr,finetune"]
    code, err = run_in_process(tmp_path, [*args, f"hydra.sweep.dir={sweep}"])
    assert code == 0, err[-3000:]
    assert sorted(read_records(sweep / str(n) / "records.jsonl")[0]["strategy"] for n in range(2)) == [
        "finetune",
        "my_lrr",
    ]


def test_the_dry_run_lists_every_job_and_the_caches_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = tmp_path / "sweep"
    code, err = run_in_process(tmp_path, ["-m", *FAST, "retrain=finetune", "seed=0", f"hydra.sweep.dir={sweep}"])
    assert code == 0, err[-3000:]
    before = snapshot(tmp_path)
    capsys.readouterr()
    args = ["-m", *FAST, "retrain=finetune,lr_rewind", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'next'}"]
    code, err = run_in_process(tmp_path, [*args, "--cfg", "job"])
    out = capsys.readouterr().out
    assert code == 0, err[-3000:]
    assert snapshot(tmp_path) == before  # nothing trained or written, not even the sweep dir
    lines = [line for line in out.splitlines() if line.startswith("#")]
    assert len(lines) == 4 and all(str(tmp_path / "next") in line for line in lines)
    assert "retrain=finetune seed=0" in lines[0] and lines[0].endswith("[job cache: hit]")
    assert [line.rsplit("[", 1)[1] for line in lines[1:]] == ["trains]", "dense cache: hit]", "trains]"]
    assert "of 4 jobs: 0 done in their dirs, 1 in the job cache; 1 of 2 dense runs in the dense cache" in out
    (sweep / "summary.md").unlink()  # a dry run in an existing sweep's dir: not reported again
    before = snapshot(tmp_path)
    capsys.readouterr()
    args = ["-m", *FAST, "retrain=finetune", "seed=0", "paths.cache_dir=elsewhere", f"hydra.sweep.dir={sweep}"]
    code, err = run_in_process(tmp_path, [*args, "--cfg", "job"])
    out = capsys.readouterr().out
    assert code == 0 and snapshot(tmp_path) == before, err[-2000:]
    assert out.splitlines()[2].endswith("[done in its dir]"), out  # (another cache: its own dir says so)


def test_a_dry_run_with_another_sweeper_is_refused_in_one_line(tmp_path: Path) -> None:
    code, err = run_in_process(tmp_path, ["-m", *FAST, "seed=0,1", "hydra/sweeper=basic", "--cfg", "job"])
    assert code == 1 and err.strip().splitlines()[-1].startswith("prune-exp: config error: -m with --cfg")
    assert not (tmp_path / "outputs").exists()


def test_hydras_basic_sweeper_still_runs_with_the_preflight(tmp_path: Path, compositions: list[list[str]]) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, "retrain=finetune,lr_rewind", "hydra/sweeper=basic", "hydra/launcher=basic"]
    args += [f"hydra.sweep.dir={sweep}"]  # Hydra's own sweeper and launcher
    code, err = run_in_process(tmp_path, args)
    assert code == 0, err[-3000:]
    assert states(sweep, 2) == ["done"] * 2
    # three times a job: the preflight, then Hydra's sweeper and launcher
    assert len([c for c in compositions if "retrain=finetune,lr_rewind" not in c]) == 6
    code, err = run_in_process(tmp_path, [*args[:-1], "prune.sparsity=1.5", f"hydra.sweep.dir={tmp_path / 'bad'}"])
    assert code == 1 and "prune.sparsity=1.5 is not allowed" in err and not (tmp_path / "bad").exists()


FILL_DISK = '''
from pathlib import Path
from hydra.experimental.callback import Callback

class FillDisk(Callback):
    """After the first job, fills the disk its sweep dir is on (a test's tiny tmpfs)."""

    def on_job_end(self, config, job_return, **kwargs):
        if config.hydra.job.num == 0:
            try:
                with open(Path(config.hydra.sweep.dir).parent / "filler", "wb") as f:
                    while True:
                        f.write(b"x" * 4096)
                        f.flush()
            except OSError:  # full
                pass
'''


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=basic"]], ids=["fused", "basic"])
def test_a_disk_that_fills_during_a_sweep_ends_it_with_one_line_and_no_cut_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: list[str]
) -> None:
    """The second job's own Hydra files cannot be written: one line says the disk is full and
    where, exit 1, and no file of the sweep is cut short; freed, the same command finishes it."""
    import sys

    with tiny_disk(tmp_path / "disk", "16m") as disk:
        (tmp_path / "fill_disk.py").write_text(FILL_DISK)
        monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
        sweep = disk / "sweep"
        fill = "+hydra.callbacks.fill._target_=fill_disk.FillDisk"
        code, err = run_in_process(disk, ["-m", *FAST, *launcher, "seed=0,1", fill, f"hydra.sweep.dir={sweep}"])
        last = err.strip().splitlines()[-1]
        assert code == 1 and last.startswith("prune-exp: the disk is full (No space left on device): "), err[-3000:]
        assert f"which holds hydra.sweep.dir={sweep}" in last and "Traceback" not in err, err[-3000:]
        # basic: job 0 ran, then job 1's dir could not be made; fused: the group filled the disk
        # while it made its jobs' dirs (job 1's), before anything trained
        written = [json.loads(p.read_text())["state"] for p in sweep.glob("*/status.json")]
        assert written == (["done"] if launcher else []) and not (sweep / "1" / "status.json").exists()
        files = [p for p in sweep.rglob("*") if p.is_file()]
        assert [p for p in files if p.stat().st_size == 0 and p.suffix == ".yaml"] == []  # none cut short
        assert [p for p in files if p.name.endswith(".tmp")] == []
        (disk / "filler").unlink()
        code, err = run_in_process(disk, ["-m", *FAST, *launcher, "seed=0,1", f"hydra.sweep.dir={sweep}"])  # freed
        assert code == 0, err[-3000:]
        assert states(sweep, 2) == ["done", "done"]


def test_hydras_sweep_grammar_glob_range_and_choice_runs_and_reports(tmp_path: Path) -> None:
    """glob() needs the config loader to list a group's options: the sweep has it; the report,
    which has only multirun.yaml, reports the job dirs it finds."""
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, "retrain=glob([finetune,lr_rew*])", "seed=range(0,2)", "prune.sparsity=choice(0.5)"]
    code, err = run_in_process(tmp_path, [*args, f"hydra.sweep.dir={sweep}"])
    assert code == 0, err[-3000:]
    assert states(sweep, 4) == ["done"] * 4
    strategies = [read_records(sweep / str(n) / "records.jsonl")[0]["strategy"] for n in range(4)]
    assert strategies == ["finetune", "finetune", "lr_rewind", "lr_rewind"]
    assert "4 jobs: 4 done." in (sweep / "summary.md").read_text()
    bad = tmp_path / "bad"  # and every job is checked before the first starts
    code, err = run_in_process(tmp_path, [*args, "retrain.budget=0", f"hydra.sweep.dir={bad}"])
    last = err.strip().splitlines()[-1]
    assert code == 1 and "in the sweep job [" in last and "retrain.budget=0 is not allowed" in last, err[-2000:]
    assert not bad.exists()


def test_a_slurm_submission_that_fails_ends_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch that reaches no cluster: one line with sbatch's reason, exit 1, no traceback."""
    import shutil

    if shutil.which("sbatch") is None:
        pytest.skip("no sbatch here")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no_cluster.conf"))
    code, err = run_in_process(tmp_path, ["-m", *FAST, "seed=0,1", "hydra/launcher=slurm"])
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("prune-exp: error: the SLURM submission failed: sbatch: "), err[-3000:]
    assert last.endswith(
        "check that sbatch reaches the cluster (sinfo) and hydra.launcher's partition, account and limits"
    )
    assert "Traceback" not in err
