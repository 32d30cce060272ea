"""The shared dense run: content-hashed, locked while it trains, published atomically.

An entry ``<cache_dir>/dense/<hash>/`` holds ``epoch_XXXX.safetensors`` (weights and
buffers at the start of dense epoch X: 0 = init, T = final), ``meta.json`` (with the
sha256 of every epoch file) and the dense training log. It is built in
``.<hash>.partial/`` and renamed into place in one step, so a reader sees a complete entry
or none. A file lock makes every other job that needs the same entry wait for the one
that trains it, then reuse it; the OS releases the lock when its holder dies, and the
next job resumes the partial run from its last epoch (``resume.ckpt``).

Epoch files are safetensors (no pickle) and are checked against their sha256 before use: a
truncated or altered file is refused with a message that says what to delete. So is an altered
``meta.json``: it carries the sha256 of its own canonical JSON (``meta_sha256``), and its spec
must hash to the entry's name.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from prune_exp.config import ConfigError, CorruptFileError
from prune_exp.config.task import DEFAULT_LOSS
from prune_exp.store import digests
from prune_exp.store.atomic import atomic_write
from prune_exp.store.digests import canonical_sha256
from prune_exp.store.files import DENSE_CACHE_DIR, DENSE_META_FILE, cache_lock_file, dense_partial_dir, epoch_file

CACHE_VERSION = 3  # bump when the entry format or what determines a dense run changes
META = DENSE_META_FILE
META_SHA = "meta_sha256"  # meta.json's own checksum: the sha256 of the canonical JSON of the rest
# Data config keys that leave the training unchanged: where the files come from and whether they
# are checked (download, verify), how evaluation is batched, how many loader processes run.
NON_TRAINING_DATA_KEYS: tuple[str, ...] = ("download", "verify", "eval_batch_size", "num_workers")


def dense_spec(
    *,
    data: dict,
    model: dict,
    optim: dict,
    epochs: int,
    seed: int,
    precision: str,
    world_size: int = 1,
    loss: str = DEFAULT_LOSS,
    weights_sha256: str | None = None,
    rewind_sha256: dict[int, str] | None = None,
    iterations: int | None = None,
) -> dict:
    """Exactly what determines a dense run — pruning and retraining settings are not in it.

    ``data`` is the data config with the digest of the data actually loaded (run.dense_spec_of),
    less its :data:`NON_TRAINING_DATA_KEYS`. A DDP run (``world_size`` > 1) sums its gradients
    in another order than one process, so its weights differ in the last bits: it gets its own
    entry. ``loss``: the task's (the metrics do not change the run). Each of the two is in the
    spec only when it is not the default, so the entries made before it was keep their hash.
    ``weights_sha256``: the dense run is a file of trained weights (dense.weights), not trained;
    ``rewind_sha256``: the files of its earlier epochs (dense.rewind_weights), if any.
    ``iterations``: the run's length in steps (dense.iterations), in place of ``epochs``."""
    precision = {"32": "32-true", "64": "64-true"}.get(str(precision), str(precision))
    extra: dict[str, Any] = {"world_size": world_size} if world_size > 1 else {}
    if loss != DEFAULT_LOSS:
        extra["loss"] = loss
    if rewind_sha256:
        extra["rewind_weights"] = {str(e): h for e, h in sorted(rewind_sha256.items())}
    length: dict[str, int] = {"epochs": epochs} if iterations is None else {"iterations": iterations}
    if weights_sha256 is not None:  # dense.weights: read from that file, so no seed or optimizer made it
        return {
            **extra,
            "version": CACHE_VERSION,
            "data": _training_data(data),
            "model": model,
            **length,
            "precision": precision,
            "weights": weights_sha256,
        }
    return {
        **extra,
        "version": CACHE_VERSION,
        "data": _training_data(data),
        "model": model,
        "optim": optim,
        **length,
        "seed": seed,
        "precision": precision,
    }


def _training_data(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in NON_TRAINING_DATA_KEYS}


def file_sha256(path: Path) -> str:
    """The file's sha256, read once per (path, size, modification time) in a process: a sweep's
    jobs share their dense.weights file, and a file rewritten since is read again."""
    st = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return digests.file_sha256(path)


def spec_hash(spec: dict) -> str:
    """A short, stable content hash of a JSON-able spec."""
    return canonical_sha256(spec)[:16]


def meta_sha256(meta: dict) -> str:
    """The checksum stored in meta.json: the sha256 of the canonical JSON of everything else in it."""
    return canonical_sha256({k: v for k, v in meta.items() if k != META_SHA})


@dataclass(frozen=True)
class DenseRun:
    """A finished, published dense run."""

    hash: str
    path: Path
    meta: dict[str, Any]

    @property
    def epochs(self) -> int:
        """The epoch whose file holds the final weights: T, or the last, partial epoch's end
        (dense.iterations); always the last one saved."""
        return max(self.saved_epochs)

    @property
    def saved_epochs(self) -> set[int]:
        return set(self.meta["saved_epochs"])

    def state(self, epoch: int) -> dict[str, torch.Tensor]:
        """Weights and buffers at the start of dense epoch ``epoch`` (safetensors: no pickle),
        after checking the file against the sha256 in meta.json."""
        if epoch not in self.saved_epochs:
            raise KeyError(f"dense run {self.hash} kept no weights for epoch {epoch}")
        data = self._verified_bytes(epoch)
        try:
            return load_bytes(data)
        except Exception as e:  # a file that matches its hash but is no safetensors: never written by us
            raise self._corrupt(epoch_file(epoch), f"not a safetensors file ({e})") from e

    def verify(self, epochs: set[int]) -> None:
        """Raise CorruptFileError unless the files of ``epochs`` are intact."""
        for e in sorted(epochs & self.saved_epochs):
            self._verified_bytes(e)

    def _verified_bytes(self, epoch: int) -> bytes:
        name = epoch_file(epoch)
        try:
            data = (self.path / name).read_bytes()
        except FileNotFoundError:
            raise self._corrupt(name, "the file is missing") from None
        expected = self.meta.get("files", {}).get(name)
        if hashlib.sha256(data).hexdigest() != expected:
            raise self._corrupt(name, "its sha256 does not match meta.json (truncated or altered)")
        return data

    def _corrupt(self, name: str, why: str) -> CorruptFileError:
        return CorruptFileError(
            f"dense cache file {self.path / name} is corrupt: {why}; delete {self.path} to train the dense model again"
        )


class DenseCache:
    """Dense runs under ``<root>/dense``, addressed by :func:`spec_hash`."""

    def __init__(self, root: str | Path) -> None:
        self.dir = Path(root) / DENSE_CACHE_DIR

    def entry(self, h: str) -> Path:
        return self.dir / h

    def partial(self, h: str) -> Path:
        """Where the run of ``h`` is trained; it stays there (resumable) until published."""
        return self.dir / dense_partial_dir(h)

    def load(self, h: str) -> DenseRun | None:
        """The published run of ``h`` (None if there is none), its meta.json verified: an entry
        whose metadata was altered is refused like a damaged weights file."""
        meta = self.entry(h) / META
        if not meta.exists():
            if self.entry(h).exists():
                raise CorruptFileError(
                    f"dense cache entry {self.entry(h)} has no {META}; delete it to train the dense model again"
                )
            return None
        try:
            parsed = json.loads(meta.read_text())
            _check_meta(parsed, h)
        except ValueError as e:
            raise CorruptFileError(
                f"dense cache file {meta} is corrupt ({e}); delete {self.entry(h)} to train the dense model again"
            ) from e
        return DenseRun(h, self.entry(h), parsed)

    @contextmanager
    def lock(self, h: str) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / cache_lock_file(h))):
            yield

    def get_or_train(
        self, spec: dict, needed_epochs: set[int], train: Callable[[Path], dict[str, Any]]
    ) -> tuple[DenseRun, bool]:
        """Return (run, was_cached). ``train(staging_dir)`` writes the epoch files there and
        returns the meta; it runs at most once per hash, however many jobs ask at once."""
        h = spec_hash(spec)
        run = self.load(h)
        if run is None:
            with self.lock(h):
                run = self.load(h)  # another job may have published it while we waited
                if run is None:
                    return self._train_and_publish(h, spec, train), False
        missing = needed_epochs - run.saved_epochs
        if missing:
            raise ConfigError(
                f"the cached dense run {run.path} kept no weights for epochs {sorted(missing)}, which "
                f"this job rewinds to; allowed: dense.rewind_epochs that include them (delete that "
                f"directory and rerun to train the dense model again)"
            )
        run.verify(needed_epochs | {run.epochs})
        return run, True

    def _train_and_publish(self, h: str, spec: dict, train: Callable[[Path], dict[str, Any]]) -> DenseRun:
        """Train in the partial dir (resuming what a killed job left there), then publish it.
        On failure the partial dir stays: the next job that needs this run resumes it."""
        staging = self.partial(h)
        staging.mkdir(parents=True, exist_ok=True)
        return self.publish(h, spec, {"trained_by": "alone", **train(staging)})

    def publish(self, h: str, spec: dict, trained: dict[str, Any]) -> DenseRun:
        """The run trained into ``partial(h)`` (its lock held), published with its metadata:
        ``trained``'s (saved_epochs, metrics, steps, seconds, trained_by), the spec, and the
        sha256 of every epoch file and of the metadata itself."""
        staging = self.partial(h)
        meta = {**trained, "hash": h, "spec": spec}
        meta["files"] = {
            epoch_file(e): hashlib.sha256((staging / epoch_file(e)).read_bytes()).hexdigest()
            for e in meta["saved_epochs"]
        }
        meta[META_SHA] = meta_sha256(meta)
        (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        staging.rename(self.entry(h))  # atomic: the entry appears complete or not at all
        run = self.load(h)
        assert run is not None
        return run


def _check_meta(meta: Any, h: str) -> None:
    """ValueError unless ``meta`` is what was published under ``h``: all keys there, its own
    checksum matching (metrics, epochs, file hashes unaltered), and its spec hashing to ``h``."""
    if not isinstance(meta, dict) or not {"spec", "saved_epochs", "files", "metrics", META_SHA} <= meta.keys():
        raise ValueError("keys missing")
    if meta[META_SHA] != meta_sha256(meta):
        raise ValueError(f"its {META_SHA} does not match its content: it was altered")
    if not isinstance(meta["spec"], dict) or spec_hash(meta["spec"]) != h:
        raise ValueError(f"its spec does not hash to the entry's name {h}")


def save_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Atomically write a state dict as safetensors (contiguous CPU tensors, no pickle)."""
    with atomic_write(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
