"""What this ``prune-exp`` process runs: its run or sweep dir, and how its sweep ended.

The Hydra callbacks fill it in (the preflight the dir, the report the outcome); the command's
exit (run.cli) reads it to say how to resume an interrupted run and to exit non-zero when a
job of the sweep did not finish or its report could not be written. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Session:
    dir_key: str = ""  # hydra.run.dir or hydra.sweep.dir
    dir: str = ""
    unfinished: int | None = None  # a sweep's jobs that did not end done (None: no report yet)
    jobs: int = 0  # the sweep's jobs
    report_error: str = ""  # why the sweep's report was not written ("": it was, or no report yet)
    dry_run: bool = False  # the sweep was only checked and listed: there is nothing to report


SESSION = Session()


def resume_hint() -> str:
    """How to pick up where this process stopped."""
    if not SESSION.dir or not Path(SESSION.dir).exists():  # stopped before it wrote anything
        return "the same command starts it again"
    return f"the same command with {SESSION.dir_key}={SESSION.dir} resumes it"


def sweep_status() -> int | str:
    """The exit status of a finished command: 0, or the line that says why its sweep's report was
    not written or which of its jobs did not finish (the command then exits with 1). It forgets
    the sweep's outcome, so a next command in this process (the tests run many) starts clean."""
    error, unfinished = SESSION.report_error, SESSION.unfinished
    SESSION.report_error, SESSION.unfinished, SESSION.dry_run = "", None, False
    if error:  # Hydra turns the report's exception into a warning: it ends here
        return f"prune-exp: the sweep's report was not written: {error}"
    if not unfinished:
        return 0
    return (
        f"prune-exp: {unfinished} of {SESSION.jobs} jobs of the sweep did not finish; "
        f"see the Jobs table of {SESSION.dir}/summary.md"
    )
