"""Resuming a killed stage: one checkpoint per stage, rewritten atomically at epoch ends.

A stage (the dense run, the prune-retrain rounds) keeps ``resume.ckpt`` in its directory.
Lightning writes it through :class:`SafeCheckpointIO` (temp file + rename: a reader sees the
previous checkpoint or the new one, never a partial file) and reads it back with
``torch.load(weights_only=True)``, so a pickle payload planted in its place is refused,
not run. Besides the model, optimizer and loop counters that Lightning saves, the
checkpoint holds the state of every object wrapped in :class:`Persist` (the round and its
mask, the records written so far, the stopwatch) and the RNG states, so that a resumed
stage continues exactly where an uninterrupted one would be: on CPU its records match bit
for bit.
"""

from __future__ import annotations

import pickle
import random
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint

from prune_exp.config import CorruptFileError, DataError
from prune_exp.store.atomic import atomic_write


class SafeCheckpointIO(CheckpointIO):
    """torch.save through an atomic rename; torch.load with ``weights_only=True`` always."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_write(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        return load_checkpoint(Path(path), map_location)

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)


def load_checkpoint(path: Path, map_location: Any | None = None, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint; anything but plain tensors and containers is refused."""
    kind, what = file_format(path)
    try:
        if kind != "torch":  # torch.load's own message for these says little ("(101)")
            raise ValueError(what)
        checkpoint = torch.load(path, map_location=map_location or "cpu", weights_only=True, mmap=mmap)
        if not (isinstance(checkpoint, dict) and "epoch" in checkpoint):  # every Lightning checkpoint has it
            raise ValueError(f"a torch file of a {type(checkpoint).__name__}, not of a Lightning checkpoint")
        return checkpoint
    except Exception as e:
        raise CorruptFileError(
            f"cannot resume from {path}: it is not a checkpoint prune-exp wrote (truncated, or altered: "
            f"{_torch_reason(e)}); delete it to run that stage from its start"
        ) from e


WEIGHTS_ALLOWED = "allowed: safetensors, or a state dict saved with torch.save (tensors only)"
# The first bytes of a file torch.save wrote in its legacy (non-zip) format: a protocol-2 pickle
# of torch's magic number.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
PICKLED_OBJECTS = "it holds pickled objects besides tensors, which torch.load(weights_only=True) refuses"


def file_format(path: Path) -> tuple[str, str]:
    """``("safetensors" | "torch" | "other", what the file is in words)``, from its first bytes:
    what a message says of a file that holds no weights (text, JSON, NumPy, a zip of other files)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as e:
        return "other", f"a file that cannot be read ({e.strerror})"
    if size == 0:
        return "other", "an empty file"
    if head[8:9] == b"{":  # safetensors: an 8-byte header length, then the header's JSON
        header = int.from_bytes(head[:8], "little")
        if 8 + header > size:
            return "other", f"a safetensors file cut short or damaged: its header is {header} bytes, the file {size}"
        return "safetensors", "a safetensors file"
    if head.startswith(TORCH_LEGACY_MAGIC):
        return "torch", "a torch file (legacy format)"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "other", "a zip archive cut short or damaged (as a truncated torch file is)"
        if any(n.split("/")[-1] == "data.pkl" for n in names):  # torch.save's zip: <name>/data.pkl
            return "torch", "a torch file"
        held = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return "other", f"a zip archive that torch.save did not write, holding {held or 'nothing'}"
    if head.startswith(b"\x93NUMPY"):
        return "other", "a NumPy .npy array, which names no parameters"
    if head[:1] == b"\x80":
        return "other", "a pickle that torch.save did not write"
    text = head.decode("utf-8", errors="replace")
    controls = sum(c < 32 and c not in b"\t\n\r\f" for c in head)
    if controls == 0 and text.count("\ufffd") <= 1:  # (the 64 bytes may cut a character in two)
        return "other", f"text, starting {(text.strip().splitlines() or [''])[0][:40]!r}"
    return "other", f"binary data of no known format, starting {head[:8]!r}"


def _torch_reason(e: BaseException) -> str:
    """torch.load's error in a few words, without its hint to load with ``weights_only=False``:
    that runs whatever code the file holds, which no message of ours suggests."""
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e):
        return PICKLED_OBJECTS
    text = " ".join(str(e).split())
    return text.split(". ")[0][:200] or type(e).__name__


def read_weights(path: Path, key: str = "dense.weights") -> dict[str, torch.Tensor]:
    """A trained model's state dict from ``path``: safetensors, or a torch file read with
    ``weights_only=True`` (a state dict, or a Lightning checkpoint's ``state_dict`` of a module
    that holds the network as ``net``). DataError naming the file and ``key`` otherwise."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataError(f"{key}={str(path)!r}: no such file; allowed: a safetensors or torch state-dict file")
    kind, what = file_format(path)
    if kind == "other":
        not_weights = "is not safetensors or a torch state dict"
        raise DataError(f"{key}={str(path)!r} {not_weights}: it is {what}; {WEIGHTS_ALLOWED}")
    try:
        if kind == "safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = _torch_reason(e) if kind == "torch" else f"a bad safetensors file: {' '.join(str(e).split())[:200]}"
        raise DataError(f"{key}={str(path)!r} cannot be read as weights ({reason}); {WEIGHTS_ALLOWED}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a Lightning checkpoint
        state = {k.removeprefix("net."): v for k, v in state["state_dict"].items()}
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise DataError(f"{key}={str(path)!r} holds no state dict (name -> tensor); allowed: a model's state_dict()")
    return state


class ResumeCheckpoint(Checkpoint):
    """Saves the whole training state to ``path`` at an epoch end: the first one at least
    ``every_s`` seconds of training after the previous save (or the stage's start); with
    ``every_s=0``, every epoch end. Under DDP, rank 0's clock decides for every rank.

    A save costs a few milliseconds (the model, optimizer, loops, records and RNGs, written
    atomically), a real share of a small model's epoch; a run killed between saves resumes
    from the last one and redoes the epochs since, to the same result (the run is a pure
    function of its seed and its checkpoint).

    A ``Checkpoint`` subclass, so Lightning runs it after every other callback: the round that
    ended in this epoch is already recorded when the state is saved.
    """

    def __init__(self, path: Path, every_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self.clock = clock
        self._last = clock()
        self.resumed_epoch: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = self.clock()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Under DDP, save_checkpoint holds a barrier: ranks whose clocks fall on either side of
        # every_s would wait on each other forever. Rank 0 decides for all (as ModelCheckpoint
        # does), and every rank restarts its interval at the same epoch end, so rank 0's ``_last``
        # is the only one that counts and all ranks agree on which epochs were saved.
        due = self.clock() - self._last >= self.every_s
        if not trainer.strategy.broadcast(due, src=0):
            return
        for logger in trainer.loggers:  # the log on disk holds every epoch the checkpoint holds
            logger.save()
        trainer.save_checkpoint(self.path)
        self._last = self.clock()

    def resume_from(self) -> str | None:
        """The checkpoint to hand to ``Trainer.fit(ckpt_path=...)``, if an earlier run left one.

        It is read (memory-mapped) and checked now, before anything else of the stage is made:
        a damaged checkpoint is refused with every file left as it was. ``resumed_epoch`` is
        then the epoch it was saved at the end of (the logs keep the epochs up to it)."""
        if not self.path.exists():
            self.resumed_epoch = None
            return None
        self.resumed_epoch = int(load_checkpoint(self.path, mmap=True)["epoch"])
        return str(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Persist(Callback):
    """Puts ``obj.state_dict()`` into every checkpoint and hands it back on resume."""

    def __init__(self, key: str, obj: Stateful) -> None:
        self.key, self.obj = key, obj

    @property
    def state_key(self) -> str:
        return f"Persist[{self.key}]"

    def state_dict(self) -> dict[str, Any]:
        return self.obj.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.obj.load_state_dict(state_dict)


class RNGState:
    """The global RNGs (torch CPU and CUDA, NumPy, Python), as tensors and plain values."""

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        out: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
            "python": _to_plain(random.getstate()),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda"] = torch.cuda.get_rng_state_all()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
        random.setstate(_to_tuple(state["python"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(x: Any) -> Any:
    return [_to_plain(v) for v in x] if isinstance(x, tuple) else x


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


class Stopwatch:
    """Wall seconds spent in a stage, summed over the processes that worked on it."""

    def __init__(self) -> None:
        self._before = 0.0
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self._before + time.perf_counter() - self._start

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._before, self._start = float(state["seconds"]), time.perf_counter()
