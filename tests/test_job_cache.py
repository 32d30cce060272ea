"""A rerun costs only new work: a finished job is cached by its config, its data and its dense
run, and a grown sweep trains only the jobs it did not have."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_in_process

from prune_exp.columns import VOLATILE
from prune_exp.job_cache import job_key
from prune_exp.records import read_records

SWEEP = ["-m", "debug=fast", "retrain=finetune", "efficiency.measure_speed=false"]


def status(job: Path) -> dict:
    return json.loads((job / "status.json").read_text())


def results(job: Path) -> list[dict]:
    keep = lambda r: {k: v for k, v in r.items() if k not in (*VOLATILE, "job_dir", "overrides")}  # noqa: E731
    return [keep(r) for r in read_records(job / "records.jsonl")]


def test_a_sweep_grown_by_one_seed_trains_exactly_one_job(tmp_path: Path) -> None:
    first, grown, forced = tmp_path / "first", tmp_path / "grown", tmp_path / "forced"
    code, err = run_in_process(tmp_path, [*SWEEP, "seed=0,1,2,3", f"hydra.sweep.dir={first}"])
    assert code == 0, err[-3000:]
    code, err = run_in_process(tmp_path, [*SWEEP, "seed=0,1,2,3,4", f"hydra.sweep.dir={grown}"])
    assert code == 0, err[-3000:]
    seeds = {read_records(grown / str(n) / "records.jsonl")[0]["seed"]: grown / str(n) for n in range(5)}
    cached = {s for s, job in seeds.items() if "job_cached" in status(job)}
    assert cached == {0, 1, 2, 3} and all(status(j)["state"] == "done" for j in seeds.values())
    assert len(list((tmp_path / "outputs" / "cache" / "jobs").glob("*/records.jsonl"))) == 5  # 4 + the new one
    for n in range(4):  # the cached jobs: the first sweep's results and files, in the new job dirs
        old = first / str(n)
        seed = read_records(old / "records.jsonl")[0]["seed"]
        assert results(seeds[seed]) == results(old)
        assert (seeds[seed] / "mask.safetensors").read_bytes() == (old / "mask.safetensors").read_bytes()
        assert {r["job_dir"] for r in read_records(seeds[seed] / "records.jsonl")} == {str(seeds[seed])}
    assert "seed=4" in " ".join(read_records(seeds[4] / "records.jsonl")[0]["overrides"])
    summary = (grown / "summary.md").read_text()
    assert "5 jobs: 5 done." in summary
    # job_cache=false trains again, to the same records (the cached ones are not stale)
    code, err = run_in_process(tmp_path, [*SWEEP, "seed=2", "job_cache=false", f"hydra.sweep.dir={forced}"])
    assert code == 0, err[-3000:]
    assert "job_cached" not in status(forced / "0")
    again = [{**r, "dense_cached": None} for r in results(forced / "0")]  # its dense run was cached by now
    assert again == [{**r, "dense_cached": None} for r in results(seeds[2])]


def test_a_job_from_the_cache_gives_its_tracker_the_config_and_every_round(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first, tracked = tmp_path / "first", tmp_path / "tracked"
    assert run_in_process(tmp_path, [*SWEEP, "seed=0", f"hydra.sweep.dir={first}"])[0] == 0
    assert run_in_process(tmp_path, [*SWEEP, "seed=0", "logger=tensorboard", f"hydra.sweep.dir={tracked}"])[0] == 0
    job = tracked / "0"
    assert "job_cached" in status(job)  # the tracker is not part of the job's key
    (events,) = job.glob("tensorboard/events.out.tfevents.*")
    ea = EventAccumulator(str(events))
    ea.Reload()
    rows = read_records(job / "records.jsonl")
    assert [(e.step, e.value) for e in ea.Scalars("round/test_acc")] == [(r["round"], r["test_acc"]) for r in rows]


def test_the_key_changes_with_the_config_the_data_and_the_dense_run() -> None:
    key = job_key("fingerprint", "data", "dense")
    assert len({key, job_key("other", "data", "dense"), job_key("fingerprint", "bytes", "dense")}) == 3
    assert key != job_key("fingerprint", "data", "other") and key == job_key("fingerprint", "data", "dense")
