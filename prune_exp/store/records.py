"""Per-round records: one row per round (round 0 = the dense model), written as JSON lines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prune_exp.store.atomic import write_text
from prune_exp.store.columns import PRUNED, VOLATILE, JobInfo, RoundInfo  # noqa: F401  (the record schema: columns.py)
from prune_exp.store.files import RECORDS_FILE

if TYPE_CHECKING:  # records are read by the report, which should not pay for importing torch
    from prune_exp.pruning.mask import Mask


def slurm_job_id() -> str | None:
    """The SLURM job this process runs in (array jobs as ``<array job id>_<task id>``)."""
    import os

    if "SLURM_ARRAY_JOB_ID" in os.environ and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts the mask decides: prunable weights and all parameters."""

    total: int  # every parameter of the model
    prunable: int  # the prunable weights
    prunable_kept: int
    kept: int  # every parameter that is not masked to zero

    @classmethod
    def of(cls, mask: Mask, prunable_names: list[str], total: int) -> ParamCounts:
        return cls(
            total=total,
            prunable=mask.numel(prunable_names),
            prunable_kept=mask.kept(prunable_names),
            kept=total - mask.pruned(),
        )


def make_row(
    info: JobInfo,
    *,
    round_: int,
    target_sparsity: float,
    counts: ParamCounts,
    mask_sha256: str,
    pruned: dict[str, float],
    retrained: dict[str, float],
    epochs: float,
    steps: int,
    seconds: float,
    cum_epochs: float,
    cum_steps: int,
    cum_seconds: float,
    efficiency: dict[str, Any] | None = None,
    diagnostics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One record row. Metric keys are ``<split>_<metric>``; ``pruned_`` ones are measured right
    after pruning, the others after the round's retraining. Costs are cumulative over the job,
    the dense stage included (also when it came from the cache)."""
    kept, total = counts.kept, counts.total
    columns = RoundInfo(
        round=round_,
        target_sparsity=target_sparsity,
        sparsity=1.0 - counts.prunable_kept / counts.prunable,
        sparsity_all=1.0 - kept / total,
        compression=total / max(kept, 1),
        total_params=total,
        nonzero_params=kept,
        prunable_params=counts.prunable,
        prunable_nonzero=counts.prunable_kept,
        mask_sha256=mask_sha256,
        retrain_epochs=epochs,
        retrain_steps=steps,
        retrain_seconds=seconds,
        cum_epochs=cum_epochs,
        cum_steps=cum_steps,
        cum_seconds=cum_seconds,
    )
    row = asdict(columns)
    row.update({PRUNED + k: v for k, v in pruned.items()})
    row.update(retrained)
    row.update(efficiency or {})
    row.update(diagnostics or {})
    row.update(asdict(info))
    return row


class RecordWriter:
    """Keeps a job's rows and rewrites the whole file atomically after each new row.

    Its state goes into the stage's resume checkpoint: a resumed job starts from the rows
    of that checkpoint (a row written after it, by the killed process, is written again).
    """

    def __init__(self, job_dir: str | Path) -> None:
        self.path = Path(job_dir) / RECORDS_FILE
        self.rows: list[dict[str, Any]] = []

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        from prune_exp.dist import is_main

        if not is_main():  # (DDP) every rank keeps the rows, rank 0 writes them
            return
        write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": json.dumps(self.rows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = json.loads(state["rows"])
        self._write()


def read_records(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
