"""The dense run is addressed by what determines it, trained once, and published atomically."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from helpers import composed, fake_mnist, job_config
from safetensors.torch import save_file

from prune_exp.app.preflight import check_job
from prune_exp.app.run import dense_spec_of, run
from prune_exp.config import ConfigError, CorruptFileError
from prune_exp.store.dense_cache import NON_TRAINING_DATA_KEYS, DenseCache, meta_sha256, spec_hash
from prune_exp.store.records import read_records


def hash_of(*overrides: str, digest: str = "the data") -> str:
    """The dense hash of a config, for one fixed data digest (the config's half of the hash)."""
    with composed(list(overrides)) as cfg:
        return spec_hash(dense_spec_of(cfg, digest))


MNIST_JOB = ["data=mnist", "model=mlp", "model.hidden=[16]", "data.batch_size=16", "data.download=false"]


def data_hash(data_dir: Path, *overrides: str) -> str:
    """The dense hash a job on ``data_dir`` gets, its data loaded and digested by the preflight."""
    with composed([*MNIST_JOB, *overrides, f"paths.data_dir={data_dir}"]) as cfg:
        return spec_hash(dense_spec_of(cfg, check_job(cfg).digest))


def change_a_label(data_dir: Path, index: int = 5) -> None:
    """One byte of MNIST's training labels: label ``index`` becomes the next class."""
    labels = data_dir / "MNIST/raw/train-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[8 + index] = (raw[8 + index] + 1) % 10
    labels.write_bytes(bytes(raw))


def test_pruning_and_retraining_settings_are_not_in_the_dense_hash() -> None:
    base = hash_of()
    for o in [
        "retrain=finetune",
        "retrain=weight_rewind",
        "retrain.budget=7",
        "retrain.finetune_lr=0.01",
        "prune.sparsity=0.5",
        "prune/criterion=random",
        "prune.scope=layerwise",
        "prune.schedule=one_shot",
        "structure=channel",
        "select_metric=f1_macro",
        "name=other",
        "trainer.progress_bar=false",
        "dense.rewind_epochs=[0,15,60]",
        "data.eval_batch_size=10",
    ]:
        assert hash_of(o) == base, o


def test_data_keys_that_leave_the_training_unchanged_are_not_in_the_dense_hash() -> None:
    assert NON_TRAINING_DATA_KEYS == ("download", "verify", "eval_batch_size", "num_workers")
    for data, overrides in [
        ("mnist", ["data.download=false", "data.verify=false"]),
        ("imagenet", ["data.num_workers=2"]),
    ]:
        base = hash_of(f"data={data}")
        for o in overrides:
            assert hash_of(f"data={data}", o) == base, o
    assert hash_of(digest="other data") != hash_of()


def test_the_dense_hash_is_of_the_data_loaded_not_of_the_config_naming_it(tmp_path: Path) -> None:
    for name in ("a", "b"):
        fake_mnist(tmp_path / name, "MNIST")
    fake_mnist(tmp_path / "c", "MNIST", n_train=60)
    a = data_hash(tmp_path / "a")
    assert data_hash(tmp_path / "b") == a == data_hash(tmp_path / "a")  # the same bytes: the same run, anywhere
    assert data_hash(tmp_path / "c") != a  # other files
    change_a_label(tmp_path / "b")
    changed = data_hash(tmp_path / "b")
    assert changed != a  # one label byte
    assert data_hash(tmp_path / "b", "data.download=true") == changed  # changes nothing about the data
    assert data_hash(tmp_path / "b", "data.val_fraction=0.25") != changed  # another split: other tensors


@pytest.mark.slow
def test_a_job_on_changed_data_trains_its_own_dense_run(tmp_path: Path) -> None:
    """The issue's case: a second data dir, one label different, must not reuse the first one's
    dense run; the preflight's digest is the job's (so it checks the entry the job will use)."""
    fake_mnist(tmp_path / "a", "MNIST")
    fake_mnist(tmp_path / "b", "MNIST")
    change_a_label(tmp_path / "b")
    small = [*MNIST_JOB, "optim/schedule=constant", "dense.epochs=1", "prune.schedule=one_shot"]
    small += ["prune.sparsity=0.5", "retrain.budget=1", "efficiency.measure_speed=false"]
    rows = {}
    for job, data, extra in [("a", "a", []), ("b", "b", []), ("b_again", "b", ["data.download=true"])]:
        cfg = job_config(tmp_path, tmp_path / data, [*small, *extra], job=job)
        preflight = spec_hash(dense_spec_of(cfg, check_job(cfg).digest))
        run(cfg)
        rows[job] = read_records(tmp_path / job / "records.jsonl")[0]
        assert rows[job]["dense_hash"] == preflight
    assert [rows[j]["dense_cached"] for j in ("a", "b", "b_again")] == [False, False, True]
    assert rows["a"]["dense_hash"] != rows["b"]["dense_hash"] == rows["b_again"]["dense_hash"]


def test_what_determines_the_dense_run_is_in_the_hash() -> None:
    base = hash_of()
    changed = [
        "data.batch_size=64",
        "data.val_fraction=0.2",
        "model.channels=[8,8,8]",
        "optim.lr=0.05",
        "optim.weight_decay=0",
        "optim.schedule.milestones=[20,40]",
        "optim/schedule=cosine",
        "dense.epochs=50",
        "seed=1",
        "trainer.precision=64-true",
        "data=digits",
        "model=mlp",
        "optim=adam",
    ]
    hashes = {o: hash_of(o) for o in changed}
    assert base not in hashes.values()
    assert len(set(hashes.values())) == len(changed)
    assert hash_of("trainer.precision=32") == base  # "32" and "32-true" are the same precision


def fake_train(calls: list[int], delay: float = 0.0, fail: bool = False, seen: list | None = None):
    def train(staging: Path) -> dict:
        calls.append(1)
        if seen is not None:
            seen.append(sorted(p.name for p in staging.iterdir()))
        time.sleep(delay)
        for e in (0, 1, 2):
            save_file({"w": torch.full((3,), float(e))}, str(staging / f"epoch_{e:04d}.safetensors"))
        if fail:
            raise RuntimeError("killed mid-training")
        return {"saved_epochs": [0, 1, 2], "metrics": {"val_acc": 0.5, "test_acc": 0.5}, "steps": 6, "seconds": 0.1}

    return train


SPEC = {"version": 1, "epochs": 2, "seed": 0}


def test_second_request_reuses_the_entry(tmp_path: Path) -> None:
    cache, calls = DenseCache(tmp_path), []
    run1, cached1 = cache.get_or_train(SPEC, {1}, fake_train(calls))
    run2, cached2 = cache.get_or_train(SPEC, {1}, fake_train(calls))
    assert (cached1, cached2, len(calls)) == (False, True, 1)
    assert run1.path == run2.path and torch.equal(run2.state(1)["w"], torch.ones(3))


def test_concurrent_requests_train_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four requests at once: the one that trains waits until the other three are blocked on the
    lock, so they certainly overlap (run one after another, or without the lock, it fails)."""
    blocked: set[int] = set()  # the threads that found the lock held by another

    class SpyLock(FileLock):
        def _acquire(self) -> None:
            super()._acquire()
            if not self.is_locked:  # one failed try: another holds the lock and this thread waits
                blocked.add(threading.get_ident())

    monkeypatch.setattr("prune_exp.store.dense_cache.FileLock", SpyLock)
    cache, calls, results, seen_blocked = DenseCache(tmp_path), [], [], []
    start = threading.Barrier(4)

    def train(staging: Path) -> dict:
        deadline = time.monotonic() + 10  # bounded: without the lock nobody ever blocks
        while len(blocked) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_blocked.append(len(blocked))
        return fake_train(calls)(staging)

    def request() -> None:
        start.wait(timeout=10)
        results.append(cache.get_or_train(SPEC, set(), train))

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen_blocked == [3] and len(calls) == 1
    assert sorted(c for _, c in results) == [False, True, True, True]


def test_a_failed_training_publishes_nothing_and_the_next_job_resumes_its_partial_dir(tmp_path: Path) -> None:
    cache, calls, seen = DenseCache(tmp_path), [], []
    h = spec_hash(SPEC)
    with pytest.raises(RuntimeError, match="killed"):
        cache.get_or_train(SPEC, set(), fake_train(calls, fail=True, seen=seen))
    assert cache.load(h) is None and not cache.entry(h).exists()
    assert sorted(p.name for p in cache.dir.iterdir()) == [f".{h}.partial", f"{h}.lock"]
    run, cached = cache.get_or_train(SPEC, set(), fake_train(calls, seen=seen))  # the next job picks it up
    assert not cached and len(calls) == 2
    assert seen == [[], ["epoch_0000.safetensors", "epoch_0001.safetensors", "epoch_0002.safetensors"]]
    assert not cache.partial(h).exists() and run.path == cache.entry(h)


def published(tmp_path: Path) -> DenseCache:
    cache = DenseCache(tmp_path)
    cache.get_or_train(SPEC, set(), fake_train([]))
    return cache


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.write_bytes(f.read_bytes()[:-7]), "its sha256 does not match"),  # truncated
        # altered: 2.0 -> 3.0, same size, still a valid safetensors file
        (lambda f: f.write_bytes(f.read_bytes().replace(b"\x00\x00\x00\x40", b"\x00\x00\x40\x40")), "its sha256"),
        (lambda f: f.unlink(), "the file is missing"),
    ],
)
def test_a_damaged_epoch_file_is_refused_with_what_to_delete(tmp_path: Path, damage, message: str) -> None:
    cache = published(tmp_path)
    entry = cache.entry(spec_hash(SPEC))
    damage(entry / "epoch_0002.safetensors")
    with pytest.raises(CorruptFileError, match=rf"epoch_0002\.safetensors is corrupt: {message}.*delete {entry}"):
        cache.get_or_train(SPEC, set(), fake_train([]))
    # an epoch the job does not need is checked when it is read
    assert torch.equal(cache.load(spec_hash(SPEC)).state(1)["w"], torch.ones(3))


def test_a_pickle_planted_as_an_epoch_file_is_never_unpickled(tmp_path: Path) -> None:
    cache = published(tmp_path)
    entry = cache.entry(spec_hash(SPEC))
    marker = tmp_path / "pwned"
    torch.save({"w": Payload(marker)}, entry / "epoch_0001.safetensors")
    with pytest.raises(CorruptFileError, match="epoch_0001"):
        cache.load(spec_hash(SPEC)).state(1)
    assert not marker.exists()


class Payload:
    """Unpickling this runs code (touches a file): what a malicious cache file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_damaged_meta_file_is_refused(tmp_path: Path) -> None:
    cache = published(tmp_path)
    meta = cache.entry(spec_hash(SPEC)) / "meta.json"
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(CorruptFileError, match=r"meta\.json is corrupt.*delete"):
        cache.get_or_train(SPEC, set(), fake_train([]))


def edit_meta(cache: DenseCache, edit: Callable[[dict], object], reseal: bool = False) -> Path:
    """Change the published entry's meta.json; ``reseal``: recompute its checksum too (a careful forger)."""
    path = cache.entry(spec_hash(SPEC)) / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    if reseal:
        meta["meta_sha256"] = meta_sha256(meta)
    path.write_text(json.dumps(meta, indent=2))
    return path


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["metrics"].update(test_acc=0.9999),  # a made-up accuracy into round 0 of the records
        lambda m: m["saved_epochs"].remove(2),  # was: a bare KeyError when the final weights are read
        lambda m: m["spec"].update(epochs=3),  # was: a bare KeyError too
        lambda m: m.update(steps=1),
        lambda m: m.pop("meta_sha256"),
    ],
    ids=["metrics", "saved_epochs", "epochs", "steps", "no-checksum"],
)
def test_an_altered_meta_file_is_refused_with_what_to_delete(tmp_path: Path, edit) -> None:
    cache = published(tmp_path)
    path = edit_meta(cache, edit)
    with pytest.raises(CorruptFileError, match=rf"{path} is corrupt \((its meta_sha256 does not match|keys missing).*"):
        run, _ = cache.get_or_train(SPEC, set(), fake_train([]))
        run.state(run.epochs)


def test_a_resealed_meta_file_whose_spec_is_not_the_entrys_is_refused(tmp_path: Path) -> None:
    cache = published(tmp_path)
    path = edit_meta(cache, lambda m: m["spec"].update(seed=1), reseal=True)  # checksum right, spec not this entry's
    with pytest.raises(CorruptFileError, match=rf"{path} is corrupt \(its spec does not hash to the entry's name"):
        cache.get_or_train(SPEC, set(), fake_train([]))
    edit_meta(cache, lambda m: m["spec"].update(seed=0), reseal=True)  # put back: accepted again
    assert cache.get_or_train(SPEC, set(), fake_train([]))[1]


def test_a_cached_run_without_a_needed_rewind_point_is_a_config_error(tmp_path: Path) -> None:
    cache, calls = DenseCache(tmp_path), []
    cache.get_or_train(SPEC, set(), fake_train(calls))
    with pytest.raises(ConfigError, match=r"kept no weights for epochs \[5\].*dense\.rewind_epochs"):
        cache.get_or_train(SPEC, {5}, fake_train(calls))
