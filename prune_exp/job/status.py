"""JobStatus: the one owner of a job dir's lock and of its ``status.json``.

A job dir has one writer at a time (jobdir.JobLock). Its ``status.json`` says what the job is
doing or how it ended: running, done (with its value), failed or interrupted (with why), plus
the facts a later reader needs (the config's fingerprint and overrides, whether the dense run
and the job came from the caches). Nothing else writes that file.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prune_exp.config import ConfigError
from prune_exp.dist import is_main
from prune_exp.interrupt import Interrupted
from prune_exp.store.atomic import write_json
from prune_exp.store.checkpoint import load_checkpoint
from prune_exp.store.files import RECORDS_FILE, RESUME_FILE, STATUS_FILE, finished
from prune_exp.store.jobdir import JobLock
from prune_exp.store.records import read_records

log = logging.getLogger("prune_exp")


class JobStatus:
    """The job dir's lock and ``status.json``. :meth:`held` takes the lock and reads the earlier
    status (``value`` is set for a job done before); :meth:`start`, :meth:`note` and
    :meth:`done` write it; a job that raises while started is written failed or interrupted."""

    def __init__(self, job_dir: Path, fingerprint: str, overrides: list[str]) -> None:
        self.job_dir, self.path = job_dir, job_dir / STATUS_FILE
        self.fields: dict[str, Any] = {"fingerprint": fingerprint, "overrides": overrides}
        self.value: float | None = None  # the job's value, once it has one
        self._started = ""  # when this run of the job started ("": not started)
        self._ended = False

    @contextlib.contextmanager
    def held(self) -> Iterator[JobStatus]:
        """The lock (rank 0's: under DDP it alone writes) and the earlier status, for the block."""
        lock = JobLock(self.job_dir) if is_main() else None
        if lock is not None:
            lock.acquire()
        try:
            previous = check_job_dir(self.job_dir, self.fields["fingerprint"])
            if previous.get("state") == "done":
                log.info("job already done (%s): nothing to train", self.job_dir)
                self.value, self._ended = float(previous["value"]), True
            elif "dense_cached" in previous:  # as the job *first* got its dense run (see note_dense)
                self.fields["dense_cached"] = previous["dense_cached"]
            try:
                yield self
            except BaseException as e:
                if self._started and not self._ended:
                    self._write({**final_state(e), "ended": _now()})
                raise
        finally:
            if lock is not None:
                lock.release()

    def start(self) -> None:
        self._started = _now()
        self._write({"state": "running"})

    def note(self, **fields: Any) -> None:
        """Facts about the running job, kept to the end."""
        self.fields.update(fields)
        self._write({"state": "running"})

    def note_dense(self, cached: bool) -> bool:
        """Whether the dense run came from the cache when this job *first* got it (a resumed job
        finds the run it trained itself in the cache): that first answer is kept."""
        if "dense_cached" not in self.fields:
            self.note(dense_cached=cached)
        return bool(self.fields["dense_cached"])

    def done(self, value: float, **fields: Any) -> None:
        """The job's value (``job_cached``: the job-cache key it was restored from)."""
        self.fields.update(fields)
        self.value, self._ended = value, True
        self._write({"state": "done", "value": value, "ended": _now()})

    def _write(self, state: dict[str, Any]) -> None:
        write_status(self.path, {**self.fields, "started": self._started, **state})


def check_job_dir(job_dir: Path, fingerprint: str) -> dict:
    """The job dir's earlier status ({} if none); ConfigError if it belongs to another config.

    Called by the job and by the preflight (before Hydra writes into the dir)."""
    status = job_dir / STATUS_FILE
    if not status.exists():
        if (job_dir / RESUME_FILE).exists():
            raise ConfigError(f"{job_dir} holds a checkpoint but no {STATUS_FILE}; allowed: a fresh hydra.run.dir")
        return {}
    try:
        previous = json.loads(status.read_text())
    except ValueError:
        previous = {"state": "unreadable"}
    if previous.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"hydra.run.dir / hydra.sweep.dir: {job_dir} already holds a job of another config "
            f"(overrides {previous.get('overrides')}); allowed: that job's config (to resume it) or a fresh dir"
        )
    if previous.get("state") == "done" and not _complete(job_dir):
        previous["state"] = "incomplete"
    if (job_dir / RESUME_FILE).exists():  # a damaged checkpoint is refused now, every file as it was
        load_checkpoint(job_dir / RESUME_FILE, mmap=True)
    return previous


def _complete(job_dir: Path) -> bool:
    try:
        rows = read_records(job_dir / RECORDS_FILE)
    except (OSError, ValueError):
        return False
    return finished(job_dir, rows)


def final_state(e: BaseException) -> dict[str, str]:
    """The status of a job that ``e`` ended: interrupted by a signal or an exit request (the
    same command resumes it), else failed, with the reason."""
    if isinstance(e, (Interrupted, KeyboardInterrupt, SystemExit)):
        reason = str(e) if isinstance(e, Interrupted) else f"{type(e).__name__} {e}".strip()
        return {"state": "interrupted", "error": f"{reason}; the same command resumes it"}
    return {"state": "failed", "error": f"{type(e).__name__}: {e}"}


def write_status(path: Path, status: dict) -> None:
    """Atomically, by rank 0 (DDP: one writer). On a full disk the temp file cannot be written:
    the status is then overwritten in place (a small file keeps its block), so a job that
    dies of ENOSPC still says so."""
    if not is_main():
        return
    try:
        write_json(path, status)
    except OSError as e:
        try:
            with open(path, "r+" if path.exists() else "w") as f:  # write first, then cut: no block freed
                f.write(json.dumps(status, indent=2, sort_keys=True) + "\n")
                f.truncate()
        except OSError:
            log.error("cannot write %s (%s): the job's state is %s", path, e, status.get("state"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
