"""The report's view of each round's diagnostics (report/diagnostics.py): the table of medians over
seeds, the LR figure, and strategies that differ only in an LR rule staying one setting."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import pytest
from report_helpers import md_table

from prune_exp.errors import ConfigError
from prune_exp.report.arms import check_arms
from prune_exp.report.collect import setting_columns
from prune_exp.report.diagnostics import diagnostics_section, diagnostics_table, lr_figure
from prune_exp.report.files import LR_FIGURE, ReportFiles
from prune_exp.report.styles import StrategyStyles
from prune_exp.report.tables import with_setting

NORM = {
    ("llr", 1): [0.30, 0.10, 0.20],
    ("llr", 2): [0.5, 0.4, 0.9],
    ("allr", 1): [0.3, 0.2, 0.1],
    ("allr", 2): [0.6, 0.7, 0.8],
}
PEAK = {"llr": lambda seed, r: 0.1, "allr": lambda seed, r: 0.01 * (seed + 1) * r}


def records() -> pd.DataFrame:
    rows = []
    for strategy, rule in (("llr", None), ("allr", "prune_exp.retrain.rules.ALLR")):
        config = {"retrain.lr": "linear", "retrain.lr_rule._target_": rule, "retrain.label": strategy.upper()}
        for seed in range(3):
            job = {"job": f"{strategy}{seed}", "strategy": strategy, "budget": 2, "seed": seed, **config}
            rows.append({**job, "round": 0})
            for r in (1, 2):
                peak = PEAK[strategy](seed, r)
                rows.append(
                    {
                        **job,
                        "round": r,
                        "norm_drop": NORM[(strategy, r)][seed],
                        "lr_peak": peak,
                        "lr_curve": [0.0, peak, peak / 2, 0.0],
                        "retrain_steps": 7,
                    }
                )
    return with_setting(pd.DataFrame(rows), [])


def test_the_table_holds_each_rounds_median_over_seeds() -> None:
    table = diagnostics_table(records())
    assert list(table.columns) == ["norm_drop", "lr_peak"]  # only the diagnostics the records have
    for (strategy, r), values in NORM.items():
        row = table.loc[("all", strategy, 2, r)]
        assert row["norm_drop"] == statistics.median(values)
        assert row["lr_peak"] == statistics.median(PEAK[strategy](s, r) for s in range(3))
    md = "\n".join(diagnostics_section(table, "all", StrategyStyles.of(records())))
    rows = md_table(md, "### Each round's pruning and the LR it retrained with")
    assert [(row["strategy"], row["round"], row["norm_drop"]) for row in rows] == [
        (s, str(r), f"{statistics.median(NORM[(s, r)]):.4g}")
        for s, r in (("llr", 1), ("llr", 2), ("allr", 1), ("allr", 2))
    ]


def test_the_lr_figure_is_written_with_each_curve_at_its_steps(tmp_path: Path) -> None:
    df = records()
    paths = lr_figure(df, ReportFiles(tmp_path), StrategyStyles.of(df))
    assert [p.name for p in paths] == [f"{LR_FIGURE}.png", f"{LR_FIGURE}.svg"]
    assert all(p.stat().st_size > 5_000 for p in paths)
    assert lr_figure(df.drop(columns=["lr_curve"]), ReportFiles(tmp_path / "none"), StrategyStyles.of(df)) == []
    one_round = df[df["round"] < 2]  # a one-shot sweep: its first round is its last
    assert len(lr_figure(one_round, ReportFiles(tmp_path / "one"), StrategyStyles.of(df))) == 2


def test_strategies_that_differ_in_a_rule_are_one_setting_and_one_name_per_rule() -> None:
    df = records()
    assert "retrain.lr_rule._target_" not in setting_columns(df)  # a strategy's own key: not a setting
    mixed = df.copy()
    mixed.loc[mixed["job"] == "allr2", "retrain.lr_rule._target_"] = "mine.Rule"
    with pytest.raises(ConfigError, match=r"strategy name 'allr' to different strategies.*retrain\.lr_rule\._target_"):
        check_arms(mixed)
