"""Per-epoch training logs that survive a resume: Lightning's CSVLogger, continued, not restarted.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts ("previous log files
will be deleted"), so a resumed stage kept only the epochs after its checkpoint, and a run
refused at resume lost its log. :class:`ResumableCSVLogger` instead keeps the rows of every
epoch up to the checkpoint it resumes from and drops the rest: those epochs are trained
again, and log themselves again. With the logger flushed at every checkpoint
(checkpoint.ResumeCheckpoint), the resumed file equals an uninterrupted run's.

Every row carries ``epoch`` (Lightning adds it), and the module logs one row per epoch, at the
end of its validation, before the checkpoint is written (lit/module.py).
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from prune_exp.store.atomic import write_text

TRAIN_LOSS = "train/loss"  # the epoch's mean training loss, a row per epoch
STEP_LOSS = "train/loss_step"  # the loss every trainer.log_every_n_steps steps, to trackers only


class _ContinuingWriter(ExperimentWriter):
    """An ExperimentWriter that starts from the kept rows of an existing metrics.csv."""

    def __init__(self, log_dir: str, keep_through_epoch: int | None) -> None:
        self._keep_through_epoch = keep_through_epoch
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv here
        kept, keys = self._kept_rows()
        self.metrics_keys = keys if kept else []
        if kept:
            write_text(self.metrics_file_path, _csv_text(kept, keys))
        elif os.path.exists(self.metrics_file_path):
            os.remove(self.metrics_file_path)

    def _kept_rows(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The rows of epochs <= keep_through_epoch (none for a fresh start), and the header."""
        if self._keep_through_epoch is None or not os.path.exists(self.metrics_file_path):
            return [], []
        with open(self.metrics_file_path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            keys = list(reader.fieldnames or [])
        return [r for r in rows if _epoch(r) is not None and _epoch(r) <= self._keep_through_epoch], keys


def _epoch(row: dict[str, Any]) -> int | None:
    """The row's epoch; None for a row a kill cut short."""
    try:
        return int(float(row.get("epoch") or "nan")) if row.get("step") not in (None, "") else None
    except ValueError:
        return None


def _csv_text(rows: list[dict[str, Any]], keys: list[str]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class ResumableCSVLogger(CSVLogger):
    """``metrics.csv`` in ``save_dir``; resuming after epoch ``keep_through_epoch`` keeps the rows
    of the epochs up to it (None: a fresh start, the file begins empty)."""

    def __init__(self, save_dir: str, keep_through_epoch: int | None = None) -> None:
        super().__init__(save_dir, name="", version="")
        self._keep_through_epoch = keep_through_epoch

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self._keep_through_epoch)
        return self._experiment
