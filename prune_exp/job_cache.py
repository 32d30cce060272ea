"""Finished jobs, cached as the dense runs are: a rerun of a job that has finished anywhere
before gets its records and files without training (a grown sweep trains only its new jobs).

A job is keyed by its config fingerprint (run.config_fingerprint: paths, the tracker and the
report's labels are not in it), the digest of the data it loaded (another data dir or changed
bytes is never a hit) and the dense run it used. Entries live in ``<cache_dir>/jobs/<key>/``,
published by an atomic rename; a lock per key makes a second identical job wait for the first
and then take its result. ``job_cache=false`` trains anyway (and publishes the new result).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from prune_exp.atomic import write_text
from prune_exp.jobfiles import RECORDS_FILE, RESULT_FILES
from prune_exp.records import read_records


def job_key(fingerprint: str, data_digest: str, dense_hash: str) -> str:
    return hashlib.sha256(f"{fingerprint}:{data_digest}:{dense_hash}".encode()).hexdigest()[:16]


class JobCache:
    def __init__(self, cache_dir: str | Path) -> None:
        self.dir = Path(cache_dir) / "jobs"

    def entry(self, key: str) -> Path:
        return self.dir / key

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / f"{key}.lock")):
            yield

    def restore(self, key: str, job_dir: Path, overrides: list[str]) -> list[dict[str, Any]] | None:
        """Copy the entry's files into ``job_dir`` (the records say this job dir and overrides)
        and return its records; None when there is no entry."""
        entry = self.entry(key)
        if not (entry / RECORDS_FILE).exists():
            return None
        _copy_results(entry, job_dir, skip=RECORDS_FILE)
        rows = [{**r, "job_dir": str(job_dir), "overrides": overrides} for r in read_records(entry / RECORDS_FILE)]
        # the records last: a job dir with records for every round and a mask is a finished job
        write_text(job_dir / RECORDS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def publish(self, key: str, job_dir: Path) -> None:
        """Copy the finished job's files into the entry: a partial dir, then one rename."""
        if self.entry(key).exists():
            return
        partial = self.dir / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _copy_results(job_dir, partial)
        partial.rename(self.entry(key))


def _copy_results(src_dir: Path, dst_dir: Path, skip: str | None = None) -> None:
    """The RESULT_FILES that ``src_dir`` has, into ``dst_dir`` (folders merged into)."""
    for name in RESULT_FILES:
        src = src_dir / name
        if src.is_dir():
            shutil.copytree(src, dst_dir / name, dirs_exist_ok=True)
        elif src.exists() and name != skip:
            shutil.copy2(src, dst_dir / name)
