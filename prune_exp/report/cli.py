"""``report_sweep``: results.csv, summary.md and the figures of one sweep dir; and the
``prune-exp-report SWEEP_DIR`` command, for sweeps that ran elsewhere or did not finish.

Everything that can refuse (a dir that is not a sweep, a file the report did not write, an
unknown metric or baseline, strategies the report would merge) is checked before anything is
written; how the files are written, and why summary.md is written last: files.py."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prune_exp.errors import ConfigError
from prune_exp.report.arms import check_arms, gradual_arms
from prune_exp.report.collect import Sweep, load_sweep, setting_columns
from prune_exp.report.diagnostics import diagnostics_section, diagnostics_table, lr_figure
from prune_exp.report.files import (
    RESULTS_FILE,
    SUMMARY_FILE,
    SUMMARY_HEADING,
    ReportFiles,
    ReportWriteError,
    check_sweep_dir,
)
from prune_exp.report.metric import ReportMetric
from prune_exp.report.provenance import provenance_lines
from prune_exp.report.sections import describe, jobs_section, search_cost_section, setting_section, subtitle
from prune_exp.report.styles import StrategyStyles
from prune_exp.report.tables import (
    LEVEL,
    available_costs,
    cell_stats,
    choose_budgets,
    cost_axis,
    dense_by_seed,
    dense_costs,
    dense_stats,
    largest_compression_at_dense,
    search_costs,
    with_setting,
)
from prune_exp.report.tuning import chosen_trials, tuned_keys, tuning_lines
from prune_exp.store.columns import metric_key
from prune_exp.store.files import MASK_FILE, round_mask_file


def report_sweep(
    sweep_dir: str | Path,
    *,
    metric: str | None = None,
    baseline: str | None = None,
    plots: bool = True,
    out: Callable[[str], None] = print,
) -> Sweep:
    """Write ``results.csv``, ``summary.md`` and the figures into ``sweep_dir``; print the summary.
    ``metric``: the test metric to report (default: the one the sweep selects on). The paired
    differences compare each strategy with ``baseline``, else every pair of strategies.
    ConfigError, before anything is written, for a dir that is not a sweep's, a file of a report
    file's name the report did not write, a metric the records lack, a baseline the sweep lacks,
    and one strategy name for two strategy configs; ReportWriteError for a file it cannot write.

    Works on whatever the dir holds: a finished sweep, one that is still running, one whose
    jobs ran on a cluster, or one with failed jobs (they are listed, the rest is reported).
    """
    sweep_dir = Path(sweep_dir)
    check_sweep_dir(sweep_dir)
    files = ReportFiles(sweep_dir)
    files.check()
    sweep = load_sweep(sweep_dir)
    md = [SUMMARY_HEADING, "", f"`{sweep_dir.resolve()}`", "", *jobs_section(sweep.jobs, sweep.unknown_jobs)]
    if sweep.results.empty:
        files.remove(SUMMARY_FILE)
        _finish(files, [*md, "No job has written records yet: nothing to compare."], out)
        return sweep

    arms, tuned = gradual_arms(sweep.results), tuned_keys(sweep_dir, sweep.results)
    check_arms(arms, tuned)
    df = with_setting(arms, setting_columns(arms, tuned))
    select_name = str(df["select_metric"].iloc[0]) if "select_metric" in df else "acc"
    m, sm = ReportMetric.of(df, metric or select_name), ReportMetric.of(df, select_name)
    styles = StrategyStyles.of(df)
    if baseline is not None and baseline not in styles.names:
        raise ConfigError(
            f"--baseline {baseline!r}: the sweep has no such strategy; allowed: {', '.join(styles.names)}"
        )
    chosen = chosen_trials(df, tuned, metric_key("val", sm.name), sm.higher_is_better) if tuned else df
    st = Statistics.of(chosen, m, sm, plots)

    files.remove(SUMMARY_FILE)  # from here on it would describe other files than those next to it
    with files.write(RESULTS_FILE) as tmp:
        df.to_csv(tmp, index=False)
    md += describe(df) + provenance_lines(chosen) + tuning_lines(chosen, tuned)
    for setting in st.dense.index:
        if len(st.dense) > 1:
            md += [f"## Setting: {setting}", ""]
        md += setting_section(setting, st.cells, st.dense, st.chosen, st.headline, m, st.select, styles, baseline)
        if setting in st.cells.index.get_level_values("setting"):
            md += search_cost_section(
                setting, st.cells, st.search, st.dense_cost, st.costs, st.select, st.cost_figure, styles
            )
        md += diagnostics_section(st.diagnostics, setting, styles)
    if plots and not st.cells.empty:
        md += _figures(chosen, st, m, styles, files)
    md += [f"Tidy results (one row per job and round, with every config value): `{RESULTS_FILE}`.", ""]
    _finish(files, md, out)
    return sweep


@dataclass(frozen=True)
class Statistics:
    """What the summary and the figures show, computed before anything is written."""

    select: str  # the val metric the budgets are chosen on
    dense: pd.DataFrame  # dense_stats
    chosen: pd.DataFrame  # choose_budgets
    cells: pd.DataFrame  # cell_stats
    headline: pd.DataFrame  # largest_compression_at_dense
    costs: list[str]
    axis: str | None  # cost_axis
    search: pd.DataFrame  # search_costs
    dense_cost: pd.DataFrame  # dense_costs
    cost_figure: bool
    diagnostics: pd.DataFrame  # diagnostics_table

    @classmethod
    def of(cls, df: pd.DataFrame, m: ReportMetric, sm: ReportMetric, plots: bool) -> Statistics:
        """The statistics of ``df`` for the metric ``m``, budgets chosen on ``sm``."""
        metric_col, select = metric_key("test", m.name), metric_key("val", sm.name)
        dense = dense_by_seed(df, metric_col)
        dstats = dense_stats(dense)
        chosen = choose_budgets(df, select, sm.higher_is_better)
        cells = cell_stats(chosen, dense, metric_col, m.higher_is_better)
        costs, axis = available_costs(df), cost_axis(df)
        return cls(
            select=select,
            dense=dstats,
            chosen=chosen,
            cells=cells,
            headline=largest_compression_at_dense(cells, dstats, m.higher_is_better),
            costs=costs,
            axis=axis,
            search=search_costs(df, metric_col, costs),
            dense_cost=dense_costs(df, costs),
            cost_figure=plots and not cells.empty and axis is not None,
            diagnostics=diagnostics_table(df),
        )


def _figures(
    df: pd.DataFrame, st: Statistics, m: ReportMetric, styles: StrategyStyles, files: ReportFiles
) -> list[str]:
    """Write the figures; the summary's section that shows them."""
    from prune_exp.report import plots as P
    from prune_exp.report.cost_figure import accuracy_vs_search_cost

    sub = subtitle(df)
    figures = P.accuracy_vs_compression(st.cells, st.dense, files, m, styles, sub)
    if (df[df["round"] > 0].groupby(["setting", "strategy", LEVEL])["budget"].nunique() > 1).any():
        figures += P.accuracy_vs_budget(df[df["round"] > 0], st.dense, files, m, styles, sub)
    if st.cost_figure:
        figures += accuracy_vs_search_cost(st.search, st.dense_cost, st.dense, files, st.axis, m, styles, sub)
    masks = _final_masks(df, files.dir)
    if not masks.empty:
        figures += P.layer_sparsity(masks, files, styles, sub)
    by_round = _round_masks(df, files.dir)
    if not by_round.empty:
        figures += P.layer_sparsity_by_round(by_round, files, styles, sub)
    figures += lr_figure(df, files, styles, sub)
    return ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"] + [""]


def _finish(files: ReportFiles, md: list[str], out: Callable[[str], None]) -> None:
    text = "\n".join(md).rstrip() + "\n"
    files.write_text(SUMMARY_FILE, text)
    out(text + f"\nwritten: {files.dir / SUMMARY_FILE}")


def _final_masks(df: pd.DataFrame, sweep_dir: Path) -> pd.DataFrame:
    """Per-layer sparsity of the final masks of the finished jobs at the highest target."""
    from prune_exp.report.plots import mask_layer_sparsity

    done = df[df["job_state"] == "done"].drop_duplicates("job", keep="last")
    done = done[done["target"] == done["target"].max()]
    rows = []
    for _, r in done.iterrows():
        path = sweep_dir / r["job"] / MASK_FILE
        if path.exists():
            for layer, sp in mask_layer_sparsity(path).items():
                rows.append(
                    {
                        "setting": r["setting"],
                        "strategy": r["strategy"],
                        "layer": layer,
                        "sparsity": sp,
                        "target": r["target"],
                        "job": r["job"],
                    }
                )
    return pd.DataFrame(rows)


def _round_masks(df: pd.DataFrame, sweep_dir: Path) -> pd.DataFrame:
    """Per-layer sparsity after every round (rounds/mask_<round>) of the finished jobs at the
    highest target, with the round's overall sparsity of the prunable weights."""
    from prune_exp.report.plots import mask_layer_sparsity

    done = df[(df["job_state"] == "done") & (df["round"] > 0)]
    done = done[done["target"] == done["target"].max()]
    rows = []
    for _, r in done.iterrows():
        path = sweep_dir / r["job"] / round_mask_file(int(r["round"]))
        if path.exists():
            for layer, sp in mask_layer_sparsity(path).items():
                rows.append(
                    {
                        "setting": r["setting"],
                        "strategy": r["strategy"],
                        "job": r["job"],
                        "round": int(r["round"]),
                        "overall": r["sparsity"],
                        "layer": layer,
                        "sparsity": sp,
                    }
                )
    return pd.DataFrame(rows)


def verdict(sweep: Sweep) -> tuple[int, str]:
    """The exit code of ``prune-exp-report`` and why, in one line: 0 when every job the sweep
    meant to run is done (so a script can tell a complete comparison from a partial one), 1
    when one is not (failed, interrupted, killed, still running, unreadable, missing), when
    which jobs it meant to run is unknown (a damaged multirun.yaml), or when there is nothing
    to report."""
    if sweep.unknown_jobs:
        return 1, (
            f"prune-exp-report: exit 1: cannot tell which jobs the sweep meant to run: {sweep.dir}/"
            f"{sweep.unknown_jobs}; {len(sweep.jobs)} job dirs found, see the Jobs table"
        )
    if sweep.results.empty:
        return 1, "prune-exp-report: exit 1: no job has written records, nothing to compare"
    pending = [j for j in sweep.jobs if not j.done]
    if not pending:
        return 0, f"prune-exp-report: all {len(sweep.jobs)} jobs done"
    counts = pd.Series([j.state for j in pending]).value_counts()
    why = ", ".join(f"{n} {state}" for state, n in counts.items())
    return 1, f"prune-exp-report: exit 1: {len(pending)} of {len(sweep.jobs)} jobs not done ({why}); see the Jobs table"


def main(argv: list[str] | None = None) -> int:
    """``prune-exp-report SWEEP_DIR``: report a sweep dir (finished, partial, or from a cluster)."""
    parser = argparse.ArgumentParser(
        prog="prune-exp-report",
        description=main.__doc__,
        epilog="Exit code: 0 when every job of the sweep is done; 1 otherwise (what there is is still reported) "
        "or when a report file cannot be written (a full disk); 2 for what the report refuses, before it writes "
        "anything: a dir that is not a sweep's, a file it did not write in the place of one of its own, an "
        "unknown --metric or --baseline, one strategy name for two strategy configs.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/compare/multiruns/<time>")
    parser.add_argument(
        "--metric",
        default=None,
        help="the test metric to report: any the records have (default: the one the sweep selects on)",
    )
    parser.add_argument(
        "--baseline",
        nargs="?",
        const="finetune",
        default=None,
        metavar="STRATEGY",
        help="compare each strategy with this one of the sweep's (alone: finetune); default: every pair",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"SWEEP_DIR {args.sweep_dir} is not a directory")
    try:
        sweep = report_sweep(args.sweep_dir, metric=args.metric, baseline=args.baseline, plots=not args.no_plots)
    except ConfigError as e:  # nothing written
        parser.exit(2, f"prune-exp-report: error: {e}\n")
    except ReportWriteError as e:
        parser.exit(1, f"prune-exp-report: error: {e}\n")
    code, why = verdict(sweep)
    print(why, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
