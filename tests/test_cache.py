"""The dense run is addressed by what determines it, trained once, and published atomically."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import composed
from safetensors.torch import save_file

from prune_exp.cache import DenseCache, spec_hash
from prune_exp.config import ConfigError, CorruptFileError
from prune_exp.run import dense_spec_of


def hash_of(*overrides: str) -> str:
    with composed(list(overrides)) as cfg:
        return spec_hash(dense_spec_of(cfg))


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
    ]:
        assert hash_of(o) == base, o


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


def test_concurrent_requests_train_once(tmp_path: Path) -> None:
    cache, calls, results = DenseCache(tmp_path), [], []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_train(SPEC, set(), fake_train(calls, 0.3))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(c for _, c in results) == [False, True, True, True]


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


def test_a_cached_run_without_a_needed_rewind_point_is_a_config_error(tmp_path: Path) -> None:
    cache, calls = DenseCache(tmp_path), []
    cache.get_or_train(SPEC, set(), fake_train(calls))
    with pytest.raises(ConfigError, match=r"kept no weights for epochs \[5\].*dense\.rewind_epochs"):
        cache.get_or_train(SPEC, {5}, fake_train(calls))
