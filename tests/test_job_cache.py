"""A rerun costs only new work: a finished job is cached by its config, its data and its dense
run, and a grown sweep trains only the jobs it did not have."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import run_in_process, snapshot

from prune_exp.store.columns import VOLATILE
from prune_exp.store.job_cache import JobCache, job_key
from prune_exp.store.records import read_records

# Hydra's basic launcher (one of the few tests that keep it): a forced rerun of one job trains
# alone, and is compared bit for bit with the sweep's job, which then trained alone too.
SWEEP = ["-m", "debug=fast", "retrain=finetune", "efficiency.measure_speed=false", "hydra/launcher=basic"]


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


# ------------------------------------------------------------ a damaged entry is never a hit
@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root whose cache holds one finished job (seed 0, in ``first/0``) and its dense run."""
    root = tmp_path_factory.mktemp("published")
    code, err = run_in_process(root, [*SWEEP, "seed=0", f"hydra.sweep.dir={root / 'first'}"])
    assert code == 0, err[-3000:]
    return root


def cached_copy(published: Path, root: Path) -> Path:
    """``root`` with a copy of ``published``'s cache; the one job cache entry in it."""
    shutil.copytree(published / "outputs" / "cache", root / "outputs" / "cache")
    (entry,) = [p for p in (root / "outputs" / "cache" / "jobs").iterdir() if p.is_dir()]
    return entry


def edit_records(entry: Path) -> None:
    rows = read_records(entry / "records.jsonl")
    (entry / "records.jsonl").write_text("".join(json.dumps({**r, "test_acc": 0.123}) + "\n" for r in rows))


DAMAGE = {  # what is done to the entry, and the file the warning must name
    "truncated weights": (lambda e: (e / "weights.safetensors").write_bytes(b"\0" * 16), "weights.safetensors"),
    "edited records": (edit_records, "records.jsonl"),
    "deleted weights": (lambda e: (e / "weights.safetensors").unlink(), "weights.safetensors"),
    # an entry as older versions wrote it: nothing to verify it against
    "no manifest": (lambda e: (e / "manifest.json").unlink(missing_ok=True), "manifest.json"),
    "an added file": (lambda e: (e / "rounds" / "extra.safetensors").write_bytes(b"x"), "rounds/extra.safetensors"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_a_miss_the_job_retrains_to_a_fresh_runs_result(
    published: Path, tmp_path: Path, damage: str
) -> None:
    entry = cached_copy(published, tmp_path)
    do, named = DAMAGE[damage]
    do(entry)
    code, err = run_in_process(tmp_path, [*SWEEP, "seed=0", f"hydra.sweep.dir={tmp_path / 'again'}"])
    assert code == 0, err[-3000:]
    job, fresh = tmp_path / "again" / "0", published / "first" / "0"
    assert "job_cached" not in status(job) and status(job)["state"] == "done"
    log = (job / "run.log").read_text()
    assert "job found in the job cache" not in log
    (warning,) = [line for line in log.splitlines() if "is damaged" in line]
    assert f"job cache entry {entry} is damaged: {named}" in warning or f"{entry} is damaged: it has no" in warning
    # the job's result is the fresh run's: records (its dense run now from the cache) and files
    same = lambda rows: [{**r, "dense_cached": None} for r in rows]  # noqa: E731
    assert same(results(job)) == same(results(fresh))
    for name in ("weights.safetensors", "mask.safetensors"):
        assert (job / name).read_bytes() == (fresh / name).read_bytes()
    # a fresh entry replaced the damaged one: verified, the fresh run's bytes, nothing left aside
    cache = JobCache(tmp_path / "outputs" / "cache")
    assert "records.jsonl" in cache.verify(entry.name)
    assert (entry / "weights.safetensors").read_bytes() == (fresh / "weights.safetensors").read_bytes()
    assert sorted(p.name for p in cache.dir.iterdir()) == sorted([entry.name, f"{entry.name}.lock"])


def test_an_intact_entry_is_a_hit_and_stays_as_it_was(published: Path, tmp_path: Path) -> None:
    entry = cached_copy(published, tmp_path)
    assert (entry / "manifest.json").is_file()
    before = snapshot(entry)
    code, err = run_in_process(tmp_path, [*SWEEP, "seed=0", f"hydra.sweep.dir={tmp_path / 'again'}"])
    assert code == 0, err[-3000:]
    job, fresh = tmp_path / "again" / "0", published / "first" / "0"
    log = (job / "run.log").read_text()
    assert status(job)["job_cached"] == entry.name and "job found in the job cache" in log and "damaged" not in log
    assert results(job) == results(fresh)
    assert (job / "weights.safetensors").read_bytes() == (fresh / "weights.safetensors").read_bytes()
    assert snapshot(entry) == before


def fake_job(job_dir: Path, weights: bytes = b"weights") -> Path:
    """A job dir with result files (no training): records, weights and a round's mask."""
    (job_dir / "rounds").mkdir(parents=True)
    (job_dir / "records.jsonl").write_text(json.dumps({"round": 0, "rounds": 0, "test_acc": 0.5}) + "\n")
    (job_dir / "weights.safetensors").write_bytes(weights)
    (job_dir / "rounds" / "mask_001.safetensors").write_bytes(b"mask")
    (job_dir / "resume.ckpt").write_bytes(b"not a result")
    return job_dir


def test_restore_of_a_damaged_entry_writes_nothing_and_publish_replaces_it(tmp_path: Path) -> None:
    cache = JobCache(tmp_path / "cache")
    cache.publish("k", fake_job(tmp_path / "first"))
    manifest = json.loads((cache.entry("k") / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["records.jsonl", "rounds/mask_001.safetensors", "weights.safetensors"]
    (cache.entry("k") / "rounds" / "mask_001.safetensors").write_bytes(b"mas")
    job = tmp_path / "job"
    job.mkdir()
    assert cache.restore("k", job, []) is None
    assert list(job.iterdir()) == [] and not cache.entry("k").exists()
    # a damaged entry that no restore saw (one published by hand) is replaced, not kept
    shutil.copytree(tmp_path / "first", cache.entry("k"))
    cache.publish("k", fake_job(tmp_path / "second", b"new weights"))
    assert (cache.entry("k") / "weights.safetensors").read_bytes() == b"new weights"
    assert cache.restore("k", job, ["seed=1"]) == [
        {"round": 0, "rounds": 0, "test_acc": 0.5, "job_dir": str(job), "overrides": ["seed=1"]}
    ]
    assert {p.relative_to(job).as_posix() for p in job.rglob("*") if p.is_file()} == {
        "records.jsonl",
        "weights.safetensors",
        "rounds/mask_001.safetensors",
    }
    # an intact entry is kept: a second publish of the key changes nothing
    cache.publish("k", fake_job(tmp_path / "third", b"other weights"))
    assert (cache.entry("k") / "weights.safetensors").read_bytes() == b"new weights"
