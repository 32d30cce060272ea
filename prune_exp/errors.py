"""The errors that mean "bad input", each reported as one line naming the key or file (no
traceback). Standard library only, so any module can raise them."""

from __future__ import annotations


class PruneExpError(Exception):
    """A problem with the user's input or files, reported as one line (no traceback)."""


class ConfigError(PruneExpError, ValueError):
    """A config value that is not allowed; the message names the key and the allowed values."""


class DataMissingError(PruneExpError):
    """A dataset whose files are not in ``paths.data_dir`` and cannot be downloaded."""


class DataError(DataMissingError):
    """Data files that are there but cannot be used: truncated or garbage files, counts that
    differ, labels outside the classes. The message names the file and what is allowed."""


class CorruptFileError(PruneExpError):
    """A file prune-exp wrote earlier (cache entry, checkpoint) that is truncated or was altered."""


class JobDirBusyError(PruneExpError):
    """Another live process holds the job dir (see jobdir.py)."""
