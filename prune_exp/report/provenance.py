"""What a comparison's jobs ran on, next to its tables: fused or unfused, the host, the device
and the torch version (the records' ``fused_group``, ``host``, ``device``, ``torch_version``).

Jobs that differ in any of these are comparable, but not bit-equal: the same config trained
fused and unfused, or on two machines, agrees step by step up to float rounding, and training
amplifies that rounding over the rounds into differences of the size of the spread between
seeds (docs/cluster.md, "Fused arms").
"""

from __future__ import annotations

import pandas as pd

UNKNOWN = "not recorded"  # records written before the column existed

# The records' columns that say where and how a job ran, with the report's name for each.
WHERE = {"path": "training", "host": "host", "device": "device", "torch_version": "torch"}


def _per_job(df: pd.DataFrame) -> pd.DataFrame:
    """One row per job: its training path (fused or alone) and where it ran."""
    jobs = df.drop_duplicates("job") if "job" in df else df  # report/collect.py: the job's dir in the sweep
    fused = jobs["fused_group"].notna() if "fused_group" in jobs else pd.Series(False, index=jobs.index)
    out = pd.DataFrame({"path": fused.map({True: "fused arm", False: "alone"})}, index=jobs.index)
    for column in ("host", "device", "torch_version"):
        values = jobs[column] if column in jobs else pd.Series(None, index=jobs.index, dtype=object)
        out[column] = values.fillna("").astype(str).replace("", UNKNOWN)
    return out


def _counted(values: pd.Series) -> str:
    counts = values.value_counts()
    return ", ".join(f"{v} ({n})" for v, n in sorted(counts.items()))


def provenance_lines(df: pd.DataFrame) -> list[str]:
    """One line of what the jobs ran on and, when they differ in any of it, which ones, with
    what that means for the comparison."""
    jobs = _per_job(df)
    same = [f"{WHERE[c]}: {jobs[c].iloc[0]}" for c in WHERE if jobs[c].nunique() == 1]
    mixed = [f"{WHERE[c]}: {_counted(jobs[c])}" for c in WHERE if jobs[c].nunique() > 1]
    lines = [f"Ran on ({len(jobs)} jobs): " + "; ".join(same) + ".", ""] if same else []
    if mixed:
        lines += [
            "**The jobs differ in how or where they ran** (jobs of each): " + "; ".join(mixed) + ". "
            "The same config run two ways agrees up to float rounding, which training amplifies into "
            "differences of the size of the seeds' spread: comparable, not bit-equal.",
            "",
        ]
    return lines
