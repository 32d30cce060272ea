"""The report says what its jobs ran on and, when they differ in it, which ones
(report/provenance.py): fused or alone, host, device, torch version."""

from __future__ import annotations

from pathlib import Path

from report_helpers import job_rows, write_job, write_multirun_yaml

from prune_exp.report.cli import main
from prune_exp.report.provenance import UNKNOWN, provenance_lines
from prune_exp.store.files import SUMMARY_FILE

JOBS = [("finetune", 0), ("finetune", 1), ("lr_rewind", 0), ("lr_rewind", 1)]


def _sweep(root: Path, where: list[dict]) -> Path:
    sweep = root / "sweep"
    sweep.mkdir()
    write_multirun_yaml(sweep, ["retrain=finetune,lr_rewind", "seed=0,1"])
    for i, ((st, seed), extra) in enumerate(zip(JOBS, where, strict=True)):
        rows = [{**r, **extra} for r in job_rows(st, seed, 2)]
        write_job(sweep / str(i), [f"retrain={st}", f"seed={seed}"], rows, "done")
    return sweep


ONE_MACHINE = {"host": "a", "device": "cpu", "torch_version": "2.5.1", "fused_group": "g1"}


def test_jobs_that_ran_alike_get_one_line_and_no_warning(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, [ONE_MACHINE] * 4)
    assert main([str(sweep), "--no-plots"]) == 0
    text = (sweep / SUMMARY_FILE).read_text()
    assert "Ran on (4 jobs): training: fused arm; host: a; device: cpu; torch: 2.5.1." in text
    assert "differ in how or where" not in text


def test_a_comparison_that_mixes_paths_devices_and_torch_versions_says_which_jobs(tmp_path: Path) -> None:
    gpu = {**ONE_MACHINE, "device": "cuda (NVIDIA H100)", "torch_version": "2.6.0", "fused_group": None}
    sweep = _sweep(tmp_path, [ONE_MACHINE, ONE_MACHINE, ONE_MACHINE, gpu])
    assert main([str(sweep), "--no-plots"]) == 0
    text = (sweep / SUMMARY_FILE).read_text()
    assert "Ran on (4 jobs): host: a." in text
    line = next(x for x in text.splitlines() if "differ in how or where" in x)
    assert "training: alone (1), fused arm (3)" in line
    assert "device: cpu (3), cuda (NVIDIA H100) (1)" in line and "torch: 2.5.1 (3), 2.6.0 (1)" in line
    assert "comparable, not bit-equal" in line


def test_records_from_before_the_columns_say_not_recorded() -> None:
    import pandas as pd

    rows = [{**r, "job": str(i)} for i, (st, seed) in enumerate(JOBS) for r in job_rows(st, seed, 1)]
    lines = provenance_lines(pd.DataFrame(rows))
    assert lines[0] == f"Ran on (4 jobs): training: alone; host: {UNKNOWN}; device: {UNKNOWN}; torch: {UNKNOWN}."
    assert len(lines) == 2
