"""The report under faults: damaged job files, dead and live "running" jobs, interrupted jobs,
and the exit code of ``prune-exp-report``. Every case uses real files in a sweep dir."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from report_helpers import job_rows, md_table, write_job, write_multirun_yaml

from prune_exp.report import report_sweep
from prune_exp.report.cli import main
from prune_exp.report.collect import load_sweep
from prune_exp.store.jobdir import JobLock

JOBS = [("finetune", 0), ("finetune", 1), ("lr_rewind", 0), ("lr_rewind", 1)]  # the sweep's order
DAMAGED = 2  # the job dir a fault damages: lr_rewind, seed 0


def sweep_dir(root: Path) -> Path:
    """A finished sweep of 4 jobs (2 strategies x 2 seeds), with the multirun.yaml Hydra writes."""
    sweep = root / "sweep"
    sweep.mkdir()
    write_multirun_yaml(sweep, ["retrain=finetune,lr_rewind", "seed=0,1"])
    for i, (st, seed) in enumerate(JOBS):
        write_job(sweep / str(i), [f"retrain={st}", f"seed={seed}"], job_rows(st, seed, 2), "done")
    return sweep


def records_text(upto: int = 2) -> str:
    return "".join(pd.Series([r]).to_json(orient="records")[1:-1] + "\n" for r in job_rows("lr_rewind", 0, upto))


# (fault, file in the job dir, its new bytes, expected state, expected detail)
FAULTS = [
    (
        "records truncated in the last line",
        "records.jsonl",
        records_text().encode()[:-25],
        "unreadable",
        "records.jsonl line 3: not JSON (",
    ),
    ("records binary", "records.jsonl", b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01", "unreadable", "line 1: not UTF-8 text ("),
    (
        "records with a garbage line",
        "records.jsonl",
        records_text().replace("\n", "\nxx\n", 1).encode(),
        "unreadable",
        "records.jsonl line 2: not JSON (",
    ),
    ("records not objects", "records.jsonl", b"[1, 2]\n", "unreadable", "line 1: not a record (a JSON list"),
    ("records without a round", "records.jsonl", b'{"seed": 0}\n', "unreadable", "line 1: not a record (no round"),
    ("records empty", "records.jsonl", b"", "no records", ""),
    ("status garbage", "status.json", b'{"state": "do', "unreadable", "status.json: not JSON ("),
    ("status binary", "status.json", b"\xff\xfe\x00", "unreadable", "status.json: not JSON ("),
    ("status not an object", "status.json", b"[]", "unreadable", "status.json: not a JSON object"),
    ("status unknown state", "status.json", b'{"state": "banana"}', "unreadable", "unknown state 'banana'"),
    ("config garbage", ".hydra/config.yaml", b"seed: [0\n", "unreadable", ".hydra/config.yaml: not YAML ("),
    ("config binary", ".hydra/config.yaml", b"\xff\xfe\x00\x01", "unreadable", ".hydra/config.yaml: not YAML ("),
    ("config a list", ".hydra/config.yaml", b"- 1\n- 2\n", "unreadable", ".hydra/config.yaml: not a config"),
    ("overrides garbage", ".hydra/overrides.yaml", b"- a: [\n", "unreadable", ".hydra/overrides.yaml: not YAML ("),
    (
        "overrides a string",
        ".hydra/overrides.yaml",
        b"seed=0\n",
        "unreadable",
        "overrides.yaml: not a list of overrides",
    ),
]


@pytest.mark.parametrize(("fault", "name", "data", "state", "detail"), FAULTS, ids=[f[0] for f in FAULTS])
def test_a_damaged_job_file_is_listed_and_the_rest_reported(
    tmp_path: Path, capsys, fault: str, name: str, data: bytes, state: str, detail: str
) -> None:
    sweep = sweep_dir(tmp_path)
    (sweep / str(DAMAGED) / name).write_bytes(data)
    before = {p: p.read_bytes() for p in (sweep / str(DAMAGED)).rglob("*") if p.is_file()}

    assert main([str(sweep), "--no-plots"]) == 1
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last == f"prune-exp-report: exit 1: 1 of 4 jobs not done (1 {state}); see the Jobs table"

    jobs = load_sweep(sweep).jobs
    assert [" ".join(j.overrides) for j in jobs] == [f"retrain={st} seed={seed}" for st, seed in JOBS]  # no stray job
    assert [j.state for j in jobs] == ["done", "done", state, "done"]
    assert detail in jobs[DAMAGED].detail and "\n" not in jobs[DAMAGED].detail
    summary = (sweep / "summary.md").read_text()
    assert f"4 jobs: 3 done, 1 {state}." in summary
    (row,) = md_table(summary, "## Jobs")
    assert (row["job"], row["state"], row["overrides"]) == (str(DAMAGED), state, "retrain=lr_rewind seed=0")
    assert detail.split(" (")[0] in row["detail"]
    # The rest is reported: the other three jobs' rows, the tables.
    csv = pd.read_csv(sweep / "results.csv")
    assert sorted(set(csv["job"].astype(str))) == ["0", "1", "3"] and len(csv) == 9
    assert "### Largest compression" in summary and "LRR − FT" in summary
    # The report reads the damaged job's files; it does not change them.
    assert {p: p.read_bytes() for p in (sweep / str(DAMAGED)).rglob("*") if p.is_file()} == before


def test_the_report_exits_0_when_every_job_is_done(tmp_path: Path, capsys) -> None:
    sweep = sweep_dir(tmp_path)
    assert main([str(sweep), "--no-plots"]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == "prune-exp-report: all 4 jobs done"


def test_the_report_exits_1_for_a_missing_job_and_for_nothing_to_report(tmp_path: Path, capsys) -> None:
    sweep = sweep_dir(tmp_path)
    for p in sorted((sweep / "3").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    (sweep / "3").rmdir()
    assert main([str(sweep), "--no-plots"]) == 1
    assert capsys.readouterr().out.rstrip().endswith("1 of 4 jobs not done (1 missing); see the Jobs table")

    empty = tmp_path / "empty"  # a sweep that has not started a job yet
    empty.mkdir()
    write_multirun_yaml(empty, ["seed=0,1"])
    assert main([str(empty)]) == 1
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last == "prune-exp-report: exit 1: no job has written records, nothing to compare"


def test_every_job_damaged_still_writes_a_report(tmp_path: Path, capsys) -> None:
    sweep = sweep_dir(tmp_path)
    for i in range(len(JOBS)):
        (sweep / str(i) / "records.jsonl").write_bytes(b"\x00\x01garbage")
    assert main([str(sweep)]) == 1
    out = capsys.readouterr().out
    assert "4 jobs: 4 unreadable." in out and "No job has written records yet" in out
    assert out.rstrip().endswith("nothing to compare")


# ------------------------------------------------------------------ running, killed, interrupted
def running_job(root: Path) -> Path:
    """A sweep whose job 2 says running, with 1 of its 2 rounds recorded."""
    sweep = sweep_dir(root)
    (sweep / "2" / "records.jsonl").write_text(records_text(upto=1))
    (sweep / "2" / "status.json").write_text('{"state": "running"}')
    return sweep


def test_a_running_job_held_by_a_live_process_is_running(tmp_path: Path) -> None:
    sweep = running_job(tmp_path)
    with JobLock(sweep / "2"):
        job = load_sweep(sweep).jobs[2]
    assert job.state == "running"
    assert job.detail == f"host {socket.gethostname()}, pid {os.getpid()}, 1 of 2 rounds recorded"


def test_a_running_job_whose_holder_died_is_killed(tmp_path: Path) -> None:
    sweep = running_job(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom prune_exp.store.jobdir import JobLock\n"
            "JobLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(120)\n",
            str(sweep / "2"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        job = load_sweep(sweep).jobs[2]
        assert (job.state, job.detail) == (
            "running",
            f"host {socket.gethostname()}, pid {holder.pid}, 1 of 2 rounds recorded",
        )
    finally:
        holder.kill()  # like kill -9: the OS drops its lock; the lock file stays
        holder.wait()
    assert (sweep / "2" / "job.lock").exists()
    job = load_sweep(sweep).jobs[2]
    assert job.state == "killed"
    assert job.detail == (
        "1 of 2 rounds recorded; no live process holds the job dir; rerun the sweep command with "
        f"hydra.sweep.dir={sweep} to resume it"
    )
    report_sweep(sweep, out=lambda _: None, plots=False)
    assert "4 jobs: 3 done, 1 killed." in (sweep / "summary.md").read_text()


def test_incomplete_records_without_a_status_and_without_a_holder_are_killed(tmp_path: Path) -> None:
    sweep = running_job(tmp_path)
    (sweep / "2" / "status.json").unlink()
    assert load_sweep(sweep).jobs[2].state == "killed"


def test_an_interrupted_job_is_listed_with_its_reason(tmp_path: Path, capsys) -> None:
    sweep = running_job(tmp_path)
    reason = "SIGTERM: stopped by a signal; the same command resumes it"
    (sweep / "2" / "status.json").write_text(f'{{"state": "interrupted", "error": "{reason}"}}')
    assert main([str(sweep), "--no-plots"]) == 1
    out = capsys.readouterr().out
    assert "4 jobs: 3 done, 1 interrupted." in out and reason in out
    assert out.rstrip().endswith("1 of 4 jobs not done (1 interrupted); see the Jobs table")
    job = load_sweep(sweep).jobs[2]
    assert (job.state, job.detail) == ("interrupted", reason)


def test_damaged_overrides_without_a_readable_multirun_yaml_are_still_listed(tmp_path: Path, capsys) -> None:
    sweep = sweep_dir(tmp_path)
    (sweep / "multirun.yaml").write_bytes(b"\xff\x00 not yaml: [")
    (sweep / "2" / ".hydra" / "overrides.yaml").write_bytes(b"- a: [\n")
    assert main([str(sweep), "--no-plots"]) == 1
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith(f"prune-exp-report: exit 1: cannot tell which jobs the sweep meant to run: {sweep}/")
    assert last.endswith("; 4 job dirs found, see the Jobs table")
    jobs = load_sweep(sweep).jobs
    assert [j.state for j in jobs] == ["done", "done", "unreadable", "done"] and jobs[2].overrides == []
