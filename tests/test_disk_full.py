"""A full disk ends a job in one line that says so and where: errors.disk_full finds ENOSPC in
an OSError, in the errors that wrap one (safetensors', torch's) and anywhere in the chain, and
the command's exit path (run.main) prints its line instead of a traceback. The real full disk
(a tiny tmpfs, as root) is in test_lifecycle.py."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest
from helpers import run_in_process

from prune_exp.errors import disk_full


class SafetensorError(Exception):
    """As safetensors' Rust error: the OS error only as text."""


FREE = r"\d+(\.\d)? (bytes|KiB|MiB|GiB|TiB) free"  # the filesystem's free space, now


def test_enospc_with_its_file_names_the_file(tmp_path: Path) -> None:
    e = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "w.safetensors"))
    message = disk_full(e, [("paths.output_dir", tmp_path)])
    assert message is not None
    assert re.fullmatch(
        rf"the disk is full \(No space left on device\): writing {tmp_path}/w\.safetensors \(on /\S*, "
        rf"{FREE}\); free space there, then run the same command again",
        message,
    ), message


@pytest.mark.parametrize(
    "error",
    [
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
        RuntimeError("[enforce fail at inline_container.cc:642] . unexpected pos 64 vs 0: errno 28"),
        OSError(errno.ENOSPC, "No space left on device"),  # no file named
    ],
    ids=["safetensors", "torch", "oserror"],
)
def test_enospc_without_a_file_names_the_job_dirs_filesystems(tmp_path: Path, error: Exception) -> None:
    job, cache = tmp_path / "job", tmp_path / "not yet" / "cache"  # a dir not yet made: its parent's filesystem
    job.mkdir()
    message = disk_full(error, [("paths.output_dir", job), ("paths.cache_dir", cache)])
    assert message is not None
    mount = str(_mount(tmp_path))
    assert re.fullmatch(
        rf"the disk is full \(No space left on device\): on {re.escape(mount)} \({FREE}\), which holds "
        rf"paths\.output_dir={job}, paths\.cache_dir={re.escape(str(cache))}; free space there, then run the same "
        "command again",
        message,
    ), message


def _mount(path: Path) -> Path:
    dev = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == dev:
        path = path.parent
    return path


def test_enospc_anywhere_in_the_chain_and_nothing_else() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("saving the checkpoint failed") from inner
    except RuntimeError as outer:
        assert disk_full(outer) is not None
    context = ValueError("while cleaning up")
    context.__context__ = SafetensorError("I/O error: No space left on device (os error 28)")
    assert disk_full(context) is not None
    looped = RuntimeError("a")
    looped.__cause__ = RuntimeError("b")
    looped.__cause__.__context__ = looped  # a cycle ends the walk
    assert disk_full(looped) is None
    for other in (OSError(errno.EACCES, "Permission denied", "/x"), RuntimeError("os error 280"), ValueError("28")):
        assert disk_full(other) is None, other
    assert disk_full(OSError(errno.ENOSPC, "x")) == (
        "the disk is full (No space left on device): the file being written is not known; free space there, then "
        "run the same command again"
    )


def test_a_job_that_fills_the_disk_ends_in_one_line_and_a_failed_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's first write of the dense run fails as safetensors fails on a full disk."""
    import prune_exp.store.dense_cache as cache

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(cache, "save_file", full)
    code, err = run_in_process(tmp_path, ["debug=fast", "hydra.run.dir=outputs/job"])
    assert code == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    job = tmp_path / "outputs" / "job"
    assert re.fullmatch(
        rf"prune-exp: the disk is full \(No space left on device\): on /\S* \({FREE}\), which holds "
        rf"paths\.output_dir={job}, paths\.cache_dir={tmp_path}/outputs/cache; free space there, then run the same "
        "command again",
        last,
    ), last
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "failed" and "No space left on device" in status["error"]
