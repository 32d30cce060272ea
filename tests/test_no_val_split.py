"""data.val_fraction=0: no val split. The records have no val columns, nothing is selected on
val, and a sweep that would need to select (several budgets) is refused before it starts."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_in_process, snapshot

from prune_exp.config import ConfigError
from prune_exp.data.base import split_indices
from prune_exp.data.synthetic import SyntheticDataModule
from prune_exp.report.tables import choose_budgets
from prune_exp.store.files import RETRAIN_LOG_DIR
from prune_exp.store.logs import TRAIN_LOSS
from prune_exp.store.records import read_records

TINY = ["debug=fast", "data.val_fraction=0", "retrain=finetune,lr_rewind", "seed=0,1"]


def test_a_zero_fraction_holds_nothing_out_and_a_tiny_one_still_fails() -> None:
    rest, held = split_indices(10, 0.0, 0)
    assert rest.tolist() == list(range(10)) and held.size == 0
    with pytest.raises(ConfigError, match=r"data\.val_fraction=0\.01 of 10 examples leaves an empty split"):
        split_indices(10, 0.01, 0)
    dm = SyntheticDataModule(batch_size=8, eval_batch_size=64, val_fraction=0.0, split_seed=0, num_samples=100)
    dm.setup()
    assert (len(dm.train), len(dm.val), len(dm.test)) == (80, 0, 20) and dm.splits == ("test",)
    assert len(dm.data_digest()) == 16


def test_a_sweep_without_val_records_test_only_and_reports(tmp_path: Path) -> None:
    code, err = run_in_process(tmp_path, ["-m", *TINY])
    assert code == 0, err[-2000:]
    (sweep,) = (tmp_path / "outputs" / "debug" / "multiruns").iterdir()
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        rows = read_records(job / "records.jsonl")
        assert [r["round"] for r in rows] == [0, 1]
        for row in rows:
            assert not [k for k in row if "val_" in k]  # no val columns, pruned ones included
            assert {"test_acc", "test_loss"} <= row.keys() and (row["round"] == 0 or "pruned_test_acc" in row)
        assert math.isnan(json.loads((job / "status.json").read_text())["value"])  # nothing to select on
        with open(job / RETRAIN_LOG_DIR / "metrics.csv") as f:  # the train loss of every epoch, no val
            log = list(csv.DictReader(f))
        assert [int(r["epoch"]) for r in log] == list(range(sum(r["retrain_epochs"] for r in rows)))
        assert all(math.isfinite(float(r[TRAIN_LOSS])) for r in log) and not [k for k in log[0] if "val" in k]
    summary = (sweep / "summary.md").read_text()
    assert "4 jobs: 4 done." in summary and "| 50.0 " in summary and "chosen on" not in summary


def test_a_sweep_that_needs_val_to_choose_a_budget_is_refused_before_it_starts(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    code, err = run_in_process(tmp_path, ["-m", *TINY, "retrain.budget=1,2"])
    assert code == 1
    assert err.strip().endswith(
        "retrain.budget=1,2 with data.val_fraction=0: the report chooses each strategy's budget on the val "
        "split, and there is none; allowed: one retrain.budget, or data.val_fraction > 0"
    )
    assert snapshot(tmp_path) == before


def test_the_report_refuses_to_choose_a_budget_on_records_without_val() -> None:
    rows = [
        {"setting": "all", "strategy": "finetune", "target_sparsity": 0.5, "round": 1, "budget": b, "seed": s}
        for b in (1, 2)
        for s in (0, 1)
    ]
    df = pd.DataFrame(rows).assign(test_acc=np.arange(4.0))
    one = choose_budgets(df[df["budget"] == 1], "val_acc")
    assert one["budgets"].tolist() == [1, 1] and one["test_acc"].tolist() == [0.0, 1.0]
    with pytest.raises(ConfigError, match=r"no val_acc .*finetune's budgets at sparsity 0\.5 \(all\)"):
        choose_budgets(df, "val_acc")
