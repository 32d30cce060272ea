"""The files of a sweep dir the report reads and writes, by name, and how it writes them.

A *sweep dir* holds Hydra's ``multirun.yaml`` (the basic sweeper writes it when the sweep
starts), a job dir (``<job>/.hydra/overrides.yaml``) or a report; the report refuses any other.

The report writes only ``REPORT_FILES``, and only over a file it wrote itself: the manifest
(``MANIFEST_FILE``) holds the sha256 of each file it wrote. A file of one of those names that
the manifest does not know (the user's own, or one changed since) is refused, named and left
as it is, before anything is written. A sweep dir reported before there was a manifest has a
``summary.md`` that starts with ``SUMMARY_HEADING``: its report files are taken as the report's.

Each file is written atomically (a temp file, then a rename) and entered in the manifest
before the rename, so a kill or a full disk leaves the old file or the new one, both known.
``summary.md`` is removed before anything else is written and written last: a summary.md is
always the whole report of the files next to it, and a report that cannot finish (a full disk,
a kill) leaves none, so an old one never passes for the current one.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prune_exp.errors import ConfigError, PruneExpError
from prune_exp.store.atomic import atomic_write, write_json
from prune_exp.store.digests import file_sha256
from prune_exp.store.files import JOB_OVERRIDES, MULTIRUN_FILE, RESULTS_FILE, SUMMARY_FILE

SUMMARY_HEADING = "# Sweep report"  # the first line of every summary.md the report wrote
MANIFEST_FILE = ".prune-exp-report.json"  # {"files": {name: [sha256, ...]}}: what the report wrote
FIGURE_FORMATS = ("png", "svg")
COMPRESSION_FIGURE = "accuracy_vs_compression"
BUDGET_FIGURE = "accuracy_vs_budget"
SEARCH_COST_FIGURE = "accuracy_vs_search_cost"
LAYER_FIGURE = "layer_sparsity"
LAYER_BY_ROUND_FIGURE = "layer_sparsity_by_round"
LR_FIGURE = "lr_over_a_round"
FIGURES = (COMPRESSION_FIGURE, BUDGET_FIGURE, SEARCH_COST_FIGURE, LAYER_FIGURE, LAYER_BY_ROUND_FIGURE, LR_FIGURE)
REPORT_FILES = (RESULTS_FILE, SUMMARY_FILE, *(f"{f}.{ext}" for f in FIGURES for ext in FIGURE_FORMATS))


class ReportWriteError(PruneExpError):
    """A report file that could not be written (a full disk, no permission); the message names it."""


def check_sweep_dir(sweep_dir: Path) -> None:
    """ConfigError unless ``sweep_dir`` is a sweep's (see the module's docstring)."""
    if (sweep_dir / MULTIRUN_FILE).is_file() or (sweep_dir / MANIFEST_FILE).is_file():
        return
    if next(sweep_dir.rglob(JOB_OVERRIDES), None) is None:
        raise ConfigError(
            f"{sweep_dir} is not a sweep dir: it has no {MULTIRUN_FILE} and no job dir (<job>/{JOB_OVERRIDES}); "
            "allowed: the dir of a multirun (its hydra.sweep.dir, e.g. outputs/<name>/multiruns/<time>)"
        )


def write_error(path: Path, e: OSError, sweep_dir: Path) -> ReportWriteError:
    """The one line for a report file that could not be written."""
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    return ReportWriteError(
        f"{'disk full: ' if full else ''}cannot write {path} ({e.strerror or e}); the sweep dir has no "
        f"{SUMMARY_FILE} until the report is written whole: {'free space' if full else 'fix that'}, "
        f"then run prune-exp-report {sweep_dir}"
    )


class ReportFiles:
    """The report's files in one sweep dir: which of them it wrote (the manifest), and writing them."""

    def __init__(self, sweep_dir: Path) -> None:
        self.dir = sweep_dir
        self.manifest = sweep_dir / MANIFEST_FILE
        self.digests = self._read()

    def _read(self) -> dict[str, list[str]]:
        """name -> the digests of the versions of it the report wrote (the one on disk among them)."""
        if not self.manifest.exists():
            summary = self.dir / SUMMARY_FILE
            if summary.is_file() and summary.read_bytes().startswith(SUMMARY_HEADING.encode() + b"\n"):
                # reported before the report kept a manifest: its files are the report's
                return {n: [file_sha256(self.dir / n)] for n in REPORT_FILES if (self.dir / n).is_file()}
            return {}
        try:
            files = json.loads(self.manifest.read_bytes().decode("utf-8"))["files"]
            if not all(isinstance(v, list) and all(isinstance(d, str) for d in v) for v in files.values()):
                raise ValueError("not lists of digests")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(
                f"{self.manifest} is damaged ({type(e).__name__}: {e}): it says which files the report wrote; "
                "allowed: delete it, and any of the report's files you do not want to keep, then report again"
            ) from None
        return files

    def ours(self, name: str) -> bool:
        """Whether the file ``name`` is one the report wrote, unchanged since."""
        path = self.dir / name
        return path.is_file() and not path.is_symlink() and file_sha256(path) in self.digests.get(name, ())

    def check(self) -> None:
        """ConfigError naming the first file of a report file's name that the report did not write."""
        for name in REPORT_FILES:
            path = self.dir / name
            if (path.exists() or path.is_symlink()) and not self.ours(name):
                raise ConfigError(
                    f"{path} was not written by prune-exp-report (or was changed since), and the report writes "
                    f"a file of that name; allowed: move it out of {self.dir} (it is left as it is), then report again"
                )

    @contextmanager
    def write(self, name: str) -> Iterator[Path]:
        """A temp path to write ``name`` to; on success it replaces the file, entered in the manifest
        first. An OSError (a full disk) leaves the file as it was: ReportWriteError naming it."""
        assert name in REPORT_FILES, name
        path = self.dir / name
        try:
            with atomic_write(path) as tmp:
                yield tmp
                # until the rename, the old version is the one on disk: keep both known
                self._enter(name, [*([file_sha256(path)] if path.is_file() else []), file_sha256(tmp)])
        except OSError as e:
            raise write_error(path, e, self.dir) from None

    def write_text(self, name: str, text: str) -> None:
        """Write ``text`` to ``name`` (see write)."""
        with self.write(name) as tmp:
            tmp.write_text(text, encoding="utf-8")

    def remove(self, name: str) -> None:
        """Remove the report's file ``name`` if it is there (check() said it is the report's)."""
        try:
            (self.dir / name).unlink(missing_ok=True)
        except OSError as e:
            raise write_error(self.dir / name, e, self.dir) from None

    def _enter(self, name: str, digests: list[str]) -> None:
        self.digests[name] = digests
        write_json(self.manifest, {"written_by": "prune-exp-report", "files": self.digests})
