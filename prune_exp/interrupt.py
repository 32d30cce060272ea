"""SIGTERM and SIGINT end a job honestly: status "interrupted", exit 128 + signal, one line.

Lightning turns SIGTERM into a ``SystemExit`` with no code (exit 0, a success to ``timeout``,
Kubernetes or any scheduler) and Ctrl-C into ``sys.exit(1)``. Here both signals raise
:class:`Interrupted` instead, a ``BaseException`` that Lightning re-raises after its teardown
and that Hydra's job runner lets through, so it reaches ``prune-exp``'s exit.

Under SLURM (hydra/launcher=submitit) submitit owns SIGTERM: on preemption it ignores the
SIGTERM and requeues on the USR2 that follows. A SIGTERM handler that is already there when
the job starts is therefore left alone (see lit/trainer.KeepSigtermHandler for Lightning's).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(BaseException):
    """The process was asked to stop by a signal; the same command resumes the job."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process killed by it (SIGTERM: 143)."""
        return 128 + self.signum


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """While inside, SIGINT (and SIGTERM, unless someone else already handles it) raise
    :class:`Interrupted`; the previous handlers come back on the way out."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    ours = [signal.SIGINT]
    if previous[signal.SIGTERM] in (signal.SIG_DFL, None):
        ours.append(signal.SIGTERM)
    for s in ours:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s in ours:
            signal.signal(s, previous[s])


EXIT_GRACE_S = 5.0  # an orphaned worker's job gets this long to record its interruption
_watching: list[int] = []  # the parent pid being watched, once per process


def exit_with_parent(poll_s: float = 1.0) -> None:
    """Send this process SIGTERM once its parent is gone (polled every ``poll_s``).

    For the worker processes of hydra/launcher=local (joblib's loky): killing the command that
    started them would otherwise leave them training on, unseen, forever. The SIGTERM ends the
    job as an interruption (status "interrupted"; the same command resumes it), then the
    process exits."""
    if _watching:
        return
    parent = os.getppid()
    _watching.append(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)  # the job records "interrupted" and unwinds...
        time.sleep(EXIT_GRACE_S)
        os._exit(128 + signal.SIGTERM)  # ...then the worker ends (the pool would keep it waiting for work)

    threading.Thread(target=watch, name="prune-exp-parent-watch", daemon=True).start()
