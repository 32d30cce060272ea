"""The report's metric: a lower-is-better metric turns every verdict round, budgets are chosen in
the select metric's direction, and a metric the records lack is refused."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import pytest
from report_helpers import MM_BY_MEDIAN, MM_BY_SEED, MM_CELLS, MM_DENSE, SEEDS, md_table, mm_rows, write_job

from prune_exp.errors import ConfigError
from prune_exp.report import report_sweep
from prune_exp.report.cli import main as report_main
from prune_exp.report.metric import ReportMetric
from prune_exp.report.tables import choose_budgets

LOWER = {"mse": {"higher_is_better": False, "percent": False}, "loss": {"higher_is_better": False, "percent": False}}


def mirrored_rows(strategy: str, seed: int) -> list[dict]:
    """The mean-vs-median job with mse = 1 - acc in place of acc: lower is better, not a fraction."""
    rows = []
    for r in mm_rows(strategy, seed):
        acc = r.pop("test_acc"), r.pop("val_acc")
        rows.append({**r, "select_metric": "mse", "metrics": LOWER, "test_mse": 1 - acc[0], "val_mse": 1 - acc[1]})
    return rows


def report_of(tmp_path: Path, make_rows) -> str:
    sweep = tmp_path / make_rows.__name__
    sweep.mkdir()
    for i, (st, seed) in enumerate((st, seed) for st in MM_CELLS for seed in SEEDS):
        write_job(sweep / str(i), [f"retrain={st}", f"seed={seed}"], make_rows(st, seed), "done")
    report_sweep(sweep, out=lambda _: None, plots=False)
    return (sweep / "summary.md").read_text()


def test_a_lower_is_better_metric_turns_every_verdict_round(tmp_path: Path) -> None:
    """mse = 1 - acc on the same records: the headline, the paired wins and the budget choice
    give the acc report's answers, read the other way round, in the metric's own units."""
    summary, acc_summary = report_of(tmp_path, mirrored_rows), report_of(tmp_path, mm_rows)
    assert "### Test mse per strategy (lower is better)" in summary  # the sweep's select metric, no (%)
    assert f"Dense model: test_mse {1 - statistics.mean(MM_DENSE.values()):.4g} ± " in summary
    heading = "### Largest compression at which the median over seeds is at or below the dense median over seeds"
    assert f"{heading} ({1 - 0.956:.4g})" in summary
    rows = {r["strategy"]: r for r in md_table(summary, heading)}
    assert {st: r["largest compression with median ≤ dense median"] for st, r in rows.items()} == {
        st: "never" if c is None else f"{c:.2f}×" for st, c in MM_BY_MEDIAN.items()
    }
    assert {st: r["largest compression where most seeds ≤ their dense"] for st, r in rows.items()} == {
        st: f"{c:.2f}×" for st, c in MM_BY_SEED.items()
    }
    # Paired: the seeds where A was better are the same seeds; the mean difference changes sign.
    mirrored = md_table(summary, "### Paired differences over the same seeds")
    plain = md_table(acc_summary, "### Paired differences over the same seeds")
    assert len(mirrored) == len(plain) == 3
    for m_row, a_row in zip(mirrored, plain, strict=True):
        for pair in ("WR − FT", "LRR − FT", "LRR − WR"):
            assert m_row[pair].rsplit(" (", 1)[1] == a_row[pair].rsplit(" (", 1)[1]  # "(2–1)"
            assert float(m_row[pair].split()[0]) == pytest.approx(-float(a_row[pair].split()[0]) / 100, abs=1e-4)
    assert "lower is better" in summary and "higher is better" in acc_summary


def test_budgets_are_chosen_in_the_select_metrics_direction() -> None:
    rows = [
        {
            "setting": "all",
            "strategy": "finetune",
            "target_sparsity": 0.5,
            "round": 1,
            "seed": s,
            "budget": b,
            "val_mse": v,
        }
        for s in (0, 1)
        for b, v in ((1, 0.30), (2, 0.20))
    ]
    df = pd.DataFrame(rows)
    assert set(choose_budgets(df, "val_mse", higher_is_better=False)["budget"]) == {2}
    assert set(choose_budgets(df, "val_mse")["budget"]) == {1}


def test_records_without_the_metrics_column_are_the_classification_tasks() -> None:
    old = pd.DataFrame({"test_acc": [0.9], "test_loss": [0.3]})
    assert ReportMetric.of(old, "acc") == ReportMetric("acc", higher_is_better=True, percent=True)
    assert ReportMetric.of(old, "loss") == ReportMetric("loss", higher_is_better=False, percent=False)
    with pytest.raises(ConfigError, match=r"--metric 'auc': the records have no test_auc; allowed: acc, loss"):
        ReportMetric.of(old, "auc")


def test_the_report_command_refuses_a_metric_the_records_lack(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep / "0", ["retrain=finetune"], mirrored_rows("finetune", 0), "done")
    with pytest.raises(SystemExit) as e:
        report_main([str(sweep), "--metric", "acc", "--no-plots"])
    assert e.value.code == 2
    assert "--metric 'acc': the records have no test_acc; allowed: mse" in capsys.readouterr().err
    assert not (sweep / "summary.md").exists()  # refused before anything is written
