"""The errors that mean "bad input", each reported as one line naming the key or file (no
traceback), and :func:`disk_full`, the one line for a full disk. Standard library only, so any
module can raise them."""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path


class PruneExpError(Exception):
    """A problem with the user's input or files, reported as one line (no traceback)."""


class ConfigError(PruneExpError, ValueError):
    """A config value that is not allowed; the message names the key and the allowed values."""


class DataMissingError(PruneExpError):
    """A dataset whose files are not in ``paths.data_dir`` and cannot be downloaded."""


class DataError(DataMissingError):
    """Data files that are there but cannot be used: truncated or garbage files, counts that
    differ, labels outside the classes. The message names the file and what is allowed."""


class LaunchError(PruneExpError):
    """A launcher that cannot start the sweep's jobs (a SLURM submission refused); says why."""


class CorruptFileError(PruneExpError):
    """A file prune-exp wrote earlier (cache entry, checkpoint) that is truncated or was altered."""


class JobDirBusyError(PruneExpError):
    """Another live process holds the job dir (see jobdir.py)."""


ENOSPC_TEXT = "No space left on device"  # strerror(ENOSPC), which the wrappers below quote


def disk_full(e: BaseException, dirs: Iterable[tuple[str, str | os.PathLike[str]]] = ()) -> str | None:
    """One line saying that the disk is full and where, if ENOSPC is anywhere in ``e``'s chain;
    else None. Where: the file being written when the error names it, else the filesystems of
    ``dirs`` ((key, dir) pairs: the dirs the job writes to), each with its free space now."""
    err = _enospc(e)
    if err is None:
        return None
    filename = getattr(err, "filename", None)
    if filename:
        path = Path(os.fsdecode(filename))
        where = f"writing {path} (on {_mount_point(path)}, {_free(path)})"
    else:  # safetensors' and torch's errors keep only the text: name the filesystems instead
        mounts: dict[Path, list[str]] = {}
        for key, d in dirs:
            mounts.setdefault(_mount_point(Path(d)), []).append(f"{key}={os.fsdecode(d)}")
        parts = [f"{m} ({_free(m)}), which holds {', '.join(keys)}" for m, keys in mounts.items()]
        where = "on " + "; ".join(parts) if parts else "the file being written is not known"
    return f"the disk is full ({ENOSPC_TEXT}): {where}; free space there, then run the same command again"


def _enospc(e: BaseException) -> BaseException | None:
    """The exception in ``e``'s chain (causes and contexts) that says the disk is full."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno == errno.ENOSPC:
            return x
        # Rust and C++ wrappers keep only the text: safetensors' SafetensorError says "I/O error:
        # No space left on device (os error 28)", torch's RuntimeError "... errno 28 ..."
        text = str(x)
        if ENOSPC_TEXT.lower() in text.lower() or re.search(r"\b(os error|errno) 28\b", text, re.IGNORECASE):
            return x
        todo += [x.__cause__, x.__context__]
    return None


def _mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds ``path`` (or would, once it is created)."""
    path = path.absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), Path(path.anchor))
    try:
        dev = existing.stat().st_dev
        for parent in existing.parents:
            if parent.stat().st_dev != dev:
                return existing
            existing = parent
    except OSError:  # a parent we may not stat: the nearest dir we could
        pass
    return existing


def _free(path: Path) -> str:
    """``path``'s filesystem's free space, in words."""
    try:
        free = float(shutil.disk_usage(_mount_point(path)).free)
    except OSError:
        return "free space unknown"
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while free >= 1024 and i < len(units) - 1:
        free, i = free / 1024, i + 1
    return f"{free:.0f} bytes free" if i == 0 else f"{free:.1f} {units[i]} free"
