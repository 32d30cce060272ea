"""``report_sweep``: results.csv, summary.md and the figures of one sweep dir; and the
``prune-exp-report SWEEP_DIR`` command, for sweeps that ran elsewhere or did not finish."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from prune_exp.atomic import atomic_write, write_text
from prune_exp.errors import ConfigError
from prune_exp.jobfiles import round_mask_file
from prune_exp.report.arms import gradual_arms
from prune_exp.report.collect import DESCRIPTORS, JobStatus, Sweep, load_sweep, setting_columns
from prune_exp.report.metric import ReportMetric
from prune_exp.report.styles import StrategyStyles
from prune_exp.report.tables import (
    BOOTSTRAP_RESAMPLES,
    COST_FORMAT,
    COST_UNIT,
    LEVEL,
    available_costs,
    cell_stats,
    choose_budgets,
    cost_axis,
    dense_by_seed,
    dense_costs,
    dense_stats,
    largest_compression_at_dense,
    paired,
    pairs,
    search_costs,
    with_setting,
)


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
    differences compare each strategy with ``baseline`` when the sweep has it, else every pair
    of strategies. ConfigError for a metric the records do not have.

    Works on whatever the dir holds: a finished sweep, one that is still running, one whose
    jobs ran on a cluster, or one with failed jobs (they are listed, the rest is reported).
    """
    sweep_dir = Path(sweep_dir)
    sweep = load_sweep(sweep_dir)
    md = ["# Sweep report", "", f"`{sweep_dir.resolve()}`", "", *_jobs_section(sweep.jobs)]
    if sweep.results.empty:
        md += ["No job has written records yet: nothing to compare."]
        _finish(sweep_dir, md, out)
        return sweep

    arms = gradual_arms(sweep.results)
    df = with_setting(arms, setting_columns(arms))
    select_name = str(df["select_metric"].iloc[0]) if "select_metric" in df else "acc"
    m, sm = ReportMetric.of(df, metric or select_name), ReportMetric.of(df, select_name)
    styles = StrategyStyles.of(df)
    with atomic_write(sweep_dir / "results.csv") as tmp:
        df.to_csv(tmp, index=False)
    metric_col, select = f"test_{m.name}", f"val_{sm.name}"
    dense = dense_by_seed(df, metric_col)
    dstats = dense_stats(dense)
    chosen = choose_budgets(df, select, sm.higher_is_better)
    stats = cell_stats(chosen, dense, metric_col, m.higher_is_better)
    headline = largest_compression_at_dense(stats, dstats, m.higher_is_better)
    costs = available_costs(df)
    axis = cost_axis(df)
    scosts = search_costs(df, metric_col, costs)
    dcosts = dense_costs(df, costs)
    cost_figure = plots and not stats.empty and axis is not None

    md += _describe(df)
    for setting in dstats.index:
        if len(dstats) > 1:
            md += [f"## Setting: {setting}", ""]
        md += _setting_section(setting, stats, dstats, chosen, headline, m, select, styles, baseline)
        if setting in stats.index.get_level_values("setting"):
            md += _search_cost_section(setting, stats, scosts, dcosts, costs, select, cost_figure, styles)

    if plots and not stats.empty:
        from prune_exp.report import plots as P

        sub = _subtitle(df)
        figures = P.accuracy_vs_compression(stats, dstats, sweep_dir, m, styles, sub)
        if (df[df["round"] > 0].groupby(["setting", "strategy", LEVEL])["budget"].nunique() > 1).any():
            figures += P.accuracy_vs_budget(df[df["round"] > 0], dstats, sweep_dir, m, styles, sub)
        if cost_figure:
            figures += P.accuracy_vs_search_cost(scosts, dcosts, dstats, sweep_dir, axis, m, styles, sub)
        masks = _final_masks(df, sweep_dir)
        if not masks.empty:
            figures += P.layer_sparsity(masks, sweep_dir, styles, sub)
        by_round = _round_masks(df, sweep_dir)
        if not by_round.empty:
            figures += P.layer_sparsity_by_round(by_round, sweep_dir, styles, sub)
        md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"] + [""]
    md += ["Tidy results (one row per job and round, with every config value): `results.csv`.", ""]
    _finish(sweep_dir, md, out)
    return sweep


def _finish(sweep_dir: Path, md: list[str], out: Callable[[str], None]) -> None:
    text = "\n".join(md).rstrip() + "\n"
    write_text(sweep_dir / "summary.md", text)
    out(text + f"\nwritten: {sweep_dir / 'summary.md'}")


def _jobs_section(jobs: list[JobStatus]) -> list[str]:
    counts = pd.Series([j.state for j in jobs]).value_counts()
    summary = ", ".join(f"{n} {state}" for state, n in counts.items()) if len(jobs) else "none found"
    lines = ["## Jobs", "", f"{len(jobs)} jobs: {summary}.", ""]
    pending = [j for j in jobs if not j.done]
    if pending:
        rows = [
            {
                "job": j.dir.name if j.dir else "–",
                "state": j.state,
                "overrides": " ".join(j.overrides),
                "detail": j.detail,
            }
            for j in pending
        ]
        lines += [pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    return lines


def _describe(df: pd.DataFrame) -> list[str]:
    """What is constant across the sweep, in one line."""
    parts = [f"{c}={df[c].iloc[0]}" for c in DESCRIPTORS if c in df and df[c].astype(str).nunique() == 1]
    seeds = sorted(df["seed"].unique())
    budgets = sorted(df.loc[df["round"] > 0, "budget"].unique())
    parts += [f"seeds={', '.join(map(str, seeds))}", f"budgets t={', '.join(map(str, budgets))}"]
    return ["## Sweep", "", "; ".join(parts), ""]


def _subtitle(df: pd.DataFrame) -> str:
    """The constant facts of a sweep for figure titles: 'mnist1d · cnn1d · magnitude · ...'."""
    keys = ["dataset", "model", "criterion", "structure", "scope", "schedule"]
    parts = [str(df[k].iloc[0]) for k in keys if k in df and df[k].astype(str).nunique() == 1]
    budgets = sorted(df.loc[df["round"] > 0, "budget"].unique()) if "budget" in df else []
    if len(budgets) == 1:
        parts.append(f"t = {budgets[0]} epochs")
    return " · ".join(parts)


def _level_rows(s: pd.DataFrame) -> Iterator[tuple[float, pd.DataFrame, dict[str, str]]]:
    """Per target sparsity of one setting's cells: (level, its cells, a table row that starts
    with the sparsity and compression reached)."""
    for level in sorted(s.index.get_level_values(LEVEL).unique()):
        cells = s.xs(level, level=LEVEL)
        row = {
            "sparsity %": f"{100 * cells['sparsity'].mean():.1f}",
            "compression": f"{cells['compression'].mean():.2f}×",
        }
        yield level, cells, row


def _setting_section(
    setting: str,
    stats: pd.DataFrame,
    dstats: pd.DataFrame,
    chosen: pd.DataFrame,
    headline: pd.DataFrame,
    m: ReportMetric,
    select: str,
    styles: StrategyStyles,
    baseline: str | None,
) -> list[str]:
    s = stats.xs(setting, level="setting")
    d = dstats.loc[setting]
    strategies = styles.ordered(s.index.get_level_values("strategy"))
    several_budgets = bool((s["budgets"] > 1).any())
    lines = [
        f"Dense model: test_{m.name} {m.mean_std_n(d['mean'], d['std'], int(d['n']))}{m.after_value} (n seeds), "
        f"median {m.value(d['median'])}{m.after_value}.",
        "",
    ]

    rows = [
        {
            "sparsity %": "0 (dense)",
            "compression": "1.00×",
            **{st: m.mean_std_n(d["mean"], d["std"], int(d["n"])) for st in strategies},
        }
    ]
    for _, cells, row in _level_rows(s):
        for st in strategies:
            if st in cells.index:
                c = cells.loc[st]
                row[st] = m.mean_std_n(c["mean"], c["std"], int(c["n"]))
                row[f"{st} Δ"] = m.signed(c["delta"])
                if several_budgets:
                    row[f"{st} t"] = str(int(c["budget"]))
        rows.append(row)
    columns = ["sparsity %", "compression"]
    for st in strategies:
        columns += [st, f"{st} Δ"] + ([f"{st} t"] if several_budgets else [])
    table = pd.DataFrame(rows).reindex(columns=columns).fillna("")
    lines += [
        f"### Test {m.name}{m.unit} per strategy ({m.direction}): mean ± std (n seeds); "
        f"Δ = mean difference to the same seed's dense model ({m.diff_unit})",
        "",
    ]
    if several_budgets:
        lines += [f"The budget t of every cell was chosen on {select} (mean over seeds), then reported on test.", ""]
    lines += [table.to_markdown(index=False, disable_numparse=True), ""]

    lines += _paired_section(setting, s, chosen, pairs(strategies, baseline), styles, m)
    lines += _headline_section(headline.xs(setting, level="setting"), strategies, m)
    return lines


def _paired_section(
    setting: str,
    s: pd.DataFrame,
    chosen: pd.DataFrame,
    compare: list[tuple[str, str]],
    styles: StrategyStyles,
    m: ReportMetric,
) -> list[str]:
    """A − B for each pair of ``compare`` (e.g. LRR − FT) per target sparsity, over the seeds both have."""
    pair_cols = {}
    for a, b in compare:
        p = paired(chosen[chosen["setting"] == setting], a, b, f"test_{m.name}", m.higher_is_better)
        p = p.xs(setting, level="setting")
        cols = ["mean_diff", "ci_lo", "ci_hi", "a_wins", "b_wins", "ties"]
        pair_cols[f"{styles.short[a]} − {styles.short[b]}"] = pd.Series(
            [m.diff_ci_wins(*r) for r in p[cols].itertuples(index=False)], index=p.index
        )
    if not pair_cols:
        return []
    levels = sorted(s.index.get_level_values(LEVEL).unique())
    pt = pd.DataFrame(pair_cols).reindex(levels)
    pt.insert(0, "compression", [f"{s.xs(lv, level=LEVEL)['compression'].mean():.2f}×" for lv in levels])
    pt.index = [f"{100 * lv:.1f}" for lv in levels]
    pt.index.name = "target sparsity %"
    return [
        f"### Paired differences over the same seeds (test {m.name}, {m.diff_unit}, {m.direction}: mean "
        f"[95% bootstrap interval over seeds, {BOOTSTRAP_RESAMPLES} resamples]; seeds where A was better–B was better)",
        "",
        pt.fillna("–").to_markdown(disable_numparse=True),
        "",
    ]


def _headline_section(h: pd.DataFrame, strategies: list[str], m: ReportMetric) -> list[str]:
    """The paper's headline: medians against the dense median, and seeds against their own dense
    model, "at least as good" in the metric's direction."""
    ge = "≥" if m.higher_is_better else "≤"
    at = "at or above" if m.higher_is_better else "at or below"
    h = h.reindex(strategies)
    dense_median = h["dense_median"].dropna().iloc[0]

    def times(values: pd.Series) -> list[str]:
        return [f"{c:.2f}×" if pd.notna(c) else "never" for c in values]

    ht = pd.DataFrame(
        {
            "strategy": strategies,
            f"largest compression with median {ge} dense median": times(h["compression"]),
            "sparsity %": [f"{100 * v:.1f}" if pd.notna(v) else "–" for v in h["sparsity"]],
            f"largest compression where most seeds {ge} their dense": times(h["paired_compression"]),
        }
    )
    return [
        f"### Largest compression at which the median over seeds is {at} the dense median over seeds "
        f"({m.value(dense_median)}{m.after_value})",
        "",
        ht.to_markdown(index=False, disable_numparse=True),
        "",
        f"Most seeds: more than half of a cell's seeds {at} the same seed's dense model.",
        "",
    ]


def _search_cost_section(
    setting: str,
    stats: pd.DataFrame,
    scosts: pd.DataFrame,
    dcosts: pd.DataFrame,
    costs: list[str],
    select: str,
    figure: bool,
    styles: StrategyStyles,
) -> list[str]:
    """What it cost to find each model of the accuracy table: the dense stage once, then per
    strategy and target sparsity the retraining up to it (at the budget chosen on ``select``
    where there were several), median over seeds."""
    lines = ["### Search cost: the dense stage once, then the retraining to each model (median over seeds)", ""]
    if not costs:
        return [*lines, "The records have no cost columns (cum_epochs, cum_seconds): nothing to show.", ""]
    d = dcosts.loc[setting]
    dense = ", ".join(f"{COST_FORMAT[c](d[c])} {COST_UNIT[c]}" for c in costs)
    s = stats.xs(setting, level="setting")
    strategies = styles.ordered(s.index.get_level_values("strategy"))
    several_budgets = bool((s["budgets"] > 1).any())
    notes = [
        f"Dense stage, counted once (one run per seed, shared by every strategy through the cache): "
        f"{dense} (median over {int(d['n'])} seed{'s' if d['n'] != 1 else ''}).",
        "Each cell is the retraining after the dense stage, cumulative over the rounds up to that target "
        "sparsity; a model's search cost is the dense stage plus its cell.",
    ]
    if several_budgets:
        notes.append(
            f"Each cell is at the budget t chosen on {select}, as in the accuracy table; the figure shows every budget."
        )
    if "train_flops" not in costs:
        notes.append("These records have no training FLOPs (written before they were counted).")
    if figure:
        notes.append("Figure: [accuracy_vs_search_cost.png](accuracy_vs_search_cost.png).")
    short = {"epochs": "epochs", "train_flops": "FLOPs", "seconds": "s"}
    rows = []
    for level, cells, row in _level_rows(s):
        for st in strategies:
            if st not in cells.index:
                continue
            budget = cells.loc[st, "budget"]
            c = scosts.loc[(setting, st, budget, level)]
            if several_budgets:
                row[f"{st} t"] = str(int(budget))
            row.update({f"{st} {short[k]}": COST_FORMAT[k](c[f"retrain_{k}"]) for k in costs})
        rows.append(row)
    columns = ["sparsity %", "compression"]
    for st in strategies:
        columns += ([f"{st} t"] if several_budgets else []) + [f"{st} {short[k]}" for k in costs]
    table = pd.DataFrame(rows).reindex(columns=columns).fillna("")
    return [*lines, " ".join(notes), "", table.to_markdown(index=False, disable_numparse=True), ""]


def _final_masks(df: pd.DataFrame, sweep_dir: Path) -> pd.DataFrame:
    """Per-layer sparsity of the final masks of the finished jobs at the highest target."""
    from prune_exp.report.plots import mask_layer_sparsity

    done = df[df["job_state"] == "done"].drop_duplicates("job", keep="last")
    done = done[done["target"] == done["target"].max()]
    rows = []
    for _, r in done.iterrows():
        path = sweep_dir / r["job"] / "mask.safetensors"
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
    when one is not (failed, interrupted, killed, still running, unreadable, missing) or when
    there is nothing to report."""
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
        epilog="Exit code: 0 when every job of the sweep is done, 1 otherwise (what there is is still reported).",
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
        help="compare each strategy with this one (alone: finetune); default: every pair of strategies",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"SWEEP_DIR {args.sweep_dir} is not a directory")
    try:
        sweep = report_sweep(args.sweep_dir, metric=args.metric, baseline=args.baseline, plots=not args.no_plots)
    except ConfigError as e:
        parser.error(str(e))
    code, why = verdict(sweep)
    print(why, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
