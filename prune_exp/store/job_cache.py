"""Finished jobs, cached as the dense runs are: a rerun of a job that has finished anywhere
before gets its records and files without training (a grown sweep trains only its new jobs).

A job is keyed by its config fingerprint (run.config_fingerprint: paths, the tracker and the
report's labels are not in it), the digest of the data it loaded (another data dir or changed
bytes is never a hit) and the dense run it used. Entries live in ``<cache_dir>/jobs/<key>/``,
published by an atomic rename; a lock per key makes a second identical job wait for the first
and then take its result. ``job_cache=false`` trains anyway and leaves the cache as it is.

An entry is trusted only as far as it is verified: it holds ``manifest.json`` (written last, before
the rename) with the sha256 of every file in it, the records included, and of its own content.
Before a hit is taken every file is checked against it; an entry that fails (a file truncated,
altered, missing or added, the manifest altered or absent, as in entries of older versions) is a
miss: one warning names it and what is wrong, it is removed, and the job trains and publishes anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from prune_exp.store.atomic import atomic_write, write_text
from prune_exp.store.digests import canonical_sha256, file_sha256
from prune_exp.store.files import (
    JOB_CACHE_DIR,
    JOB_MANIFEST_FILE,
    RECORDS_FILE,
    RESULT_FILES,
    cache_lock_file,
    job_partial_dir,
)
from prune_exp.store.records import read_records

log = logging.getLogger("prune_exp")

MANIFEST = JOB_MANIFEST_FILE  # {"key", "files": {relative path: sha256}, MANIFEST_SHA}
MANIFEST_SHA = "manifest_sha256"  # the sha256 of the canonical JSON of the rest of the manifest
MANIFEST_VERSION = 1


class DamagedEntry(ValueError):
    """A job cache entry that does not match its manifest; the message says which file."""


def job_key(fingerprint: str, data_digest: str, dense_hash: str) -> str:
    """The entry name of a job: its config fingerprint, data digest and dense run."""
    return hashlib.sha256(f"{fingerprint}:{data_digest}:{dense_hash}".encode()).hexdigest()[:16]


class JobCache:
    """Finished jobs under ``<cache_dir>/jobs/<key>/``, each verified against its manifest."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.dir = Path(cache_dir) / JOB_CACHE_DIR

    def entry(self, key: str) -> Path:
        return self.dir / key

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the key's file lock: restore and publish of one key run under it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / cache_lock_file(key))):
            yield

    def restore(self, key: str, job_dir: Path, overrides: list[str]) -> list[dict[str, Any]] | None:
        """Copy the entry's files into ``job_dir`` (the records say this job dir and overrides)
        and return its records; None when there is no entry, or it is damaged (then removed)."""
        entry = self.entry(key)
        if not entry.exists():
            return None
        try:
            files = self.verify(key)
        except DamagedEntry as e:
            self._discard(key, str(e))
            return None
        # every file checked before the first is copied: a damaged entry leaves the job dir as it was
        for rel in files:
            if rel != RECORDS_FILE:
                with atomic_write(job_dir / rel) as tmp:
                    shutil.copyfile(entry / rel, tmp)
        rows = [{**r, "job_dir": str(job_dir), "overrides": overrides} for r in read_records(entry / RECORDS_FILE)]
        # the records last: a job dir with records for every round and a mask is a finished job
        write_text(job_dir / RECORDS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def verify(self, key: str) -> list[str]:
        """The entry's files (paths relative to it, the manifest excepted), each checked against
        the manifest; DamagedEntry naming the first file that is missing, altered or unlisted."""
        entry = self.entry(key)
        listed = _read_manifest(entry, key)
        present = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if not p.is_dir()} - {MANIFEST}
        for rel in sorted(listed):
            if rel not in present:
                raise DamagedEntry(f"{rel} is missing")
            if file_sha256(entry / rel) != listed[rel]:
                raise DamagedEntry(f"{rel} does not match its sha256 in {MANIFEST} (truncated or altered)")
        unlisted = sorted(present - listed.keys())
        if unlisted:
            raise DamagedEntry(f"{unlisted[0]} is not in its {MANIFEST} (added after the entry was published)")
        return sorted(listed)

    def publish(self, key: str, job_dir: Path) -> None:
        """Copy the finished job's files into the entry: a partial dir, its manifest last, then one
        rename. An intact entry is kept; a damaged one is replaced."""
        entry = self.entry(key)
        if entry.exists():
            try:
                self.verify(key)
                return
            except DamagedEntry as e:
                self._discard(key, str(e))
        partial = self.dir / job_partial_dir(key)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _copy_results(job_dir, partial)
        files = {p.relative_to(partial).as_posix(): file_sha256(p) for p in sorted(partial.rglob("*")) if p.is_file()}
        manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "key": key, "files": files}
        manifest[MANIFEST_SHA] = _manifest_sha256(manifest)
        write_text(partial / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        partial.rename(entry)  # atomic: the entry appears complete, manifest and all, or not at all

    def _discard(self, key: str, why: str) -> None:
        """Take a damaged entry out of the cache: one rename (a reader sees it whole or not at
        all), then its files removed. Another process may have taken it out already."""
        entry = self.entry(key)
        log.warning("job cache entry %s is damaged: %s; it is removed and the job trains again", entry, why)
        aside = self.dir / f".{key}.damaged-{uuid.uuid4().hex[:8]}"
        try:
            entry.rename(aside)
        except FileNotFoundError:
            return
        if aside.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)


def _read_manifest(entry: Path, key: str) -> dict[str, str]:
    """The manifest's file digests; DamagedEntry unless it is the intact manifest of ``key``."""
    path = entry / MANIFEST
    if not path.is_file():
        raise DamagedEntry(f"it has no {MANIFEST} (written by an older prune-exp, or damaged): it cannot be verified")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise DamagedEntry(f"{MANIFEST} cannot be read ({e})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get(MANIFEST_SHA) != _manifest_sha256(manifest):
        raise DamagedEntry(f"{MANIFEST} does not match its {MANIFEST_SHA} (truncated or altered)")
    if manifest.get("key") != key:
        raise DamagedEntry(f"{MANIFEST} is that of entry {manifest.get('key')!r}, not of {key}")
    if RECORDS_FILE not in files:
        raise DamagedEntry(f"{MANIFEST} lists no {RECORDS_FILE}")
    return files


def _manifest_sha256(manifest: dict[str, Any]) -> str:
    """The digest of the manifest's content, itself left out."""
    return canonical_sha256({k: v for k, v in manifest.items() if k != MANIFEST_SHA})


def _copy_results(src_dir: Path, dst_dir: Path) -> None:
    """The RESULT_FILES that ``src_dir`` has, into ``dst_dir`` (folders merged into)."""
    for name in RESULT_FILES:
        src = src_dir / name
        if src.is_dir():
            shutil.copytree(src, dst_dir / name, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dst_dir / name)
