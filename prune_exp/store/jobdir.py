"""A job dir has one writer at a time: an exclusive lock held for the job's whole life.

The lock is ``flock`` on ``job.lock`` in the job dir; the file also says who holds it (host,
pid, since when). The OS drops the lock when its holder dies (kill -9, a node's job killed by
SLURM), so a lock left by a dead process never blocks a resume: the file may stay, the lock
does not. ``holder`` tells a live writer from a dead one without disturbing it, which the
preflight (refuse a second writer before Hydra writes anything) and the report (a "running"
job whose writer is gone was killed) both use.

fcntl's flock directly, not filelock (which the dense cache uses to wait its turn): here a
second writer must be refused at once with the holder's name, and a reader must probe the
lock without taking it, which filelock does not offer. Standard library only (no torch): the
report imports it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prune_exp.errors import JobDirBusyError
from prune_exp.store.files import LOCK_FILE

# A reader's probe (holder) takes the lock shared for a few microseconds; a job that starts
# at that moment retries for this long before it calls the dir taken.
ACQUIRE_GRACE_S = 1.0


def busy(job_dir: Path, who: dict[str, Any]) -> JobDirBusyError:
    """The one-line refusal of a second writer."""
    return JobDirBusyError(
        f"{job_dir} is in use by another prune-exp process ({describe(who)}); allowed: wait for it to end, "
        "or another hydra.run.dir / hydra.sweep.dir"
    )


def describe(who: dict[str, Any]) -> str:
    """'host node1, pid 4242, since 2026-12-01T10:00:00+00:00'."""
    return f"host {who.get('host', '?')}, pid {who.get('pid', '?')}, since {who.get('since', '?')}"


class JobLock:
    """The exclusive lock on a job dir, held from :meth:`acquire` until :meth:`release` (or the
    process's death). Re-entrant within one process: a second acquire is a no-op."""

    def __init__(self, job_dir: str | Path) -> None:
        self.job_dir = Path(job_dir)
        self.path = self.job_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise JobDirBusyError naming the holder."""
        if self._fd is not None:
            return
        self.job_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        deadline = time.monotonic() + ACQUIRE_GRACE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    who = _read(fd)
                    os.close(fd)
                    raise busy(self.job_dir, who) from None
                time.sleep(0.02)  # perhaps a reader's probe, over in microseconds: retry
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # no holder named once it is free
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(job_dir: str | Path) -> dict[str, Any] | None:
    """Who holds ``job_dir``'s lock now ({host, pid, since}), or None when no live process does."""
    path = Path(job_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or {"host": "?", "pid": "?", "since": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> dict[str, Any]:
    try:
        who = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return who if isinstance(who, dict) else {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
