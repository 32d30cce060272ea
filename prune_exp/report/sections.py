"""The summary's markdown sections: the jobs, the sweep's constants, and per setting the
accuracy table, the paired differences, the headline and the search cost."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from prune_exp.report.collect import DESCRIPTORS, JobProgress
from prune_exp.report.files import SEARCH_COST_FIGURE
from prune_exp.report.metric import ReportMetric
from prune_exp.report.styles import StrategyStyles
from prune_exp.report.tables import (
    BOOTSTRAP_RESAMPLES,
    COST_FORMAT,
    COST_UNIT,
    LEVEL,
    paired,
    pairs,
)
from prune_exp.store.columns import metric_key


def jobs_section(jobs: list[JobProgress], unknown_jobs: str = "") -> list[str]:
    """How many jobs are in each state, and a table of those not done (``unknown_jobs``: why the
    sweep's list of jobs is unknown, so that these are only the jobs found)."""
    counts = pd.Series([j.state for j in jobs]).value_counts()
    summary = ", ".join(f"{n} {state}" for state, n in counts.items()) if len(jobs) else "none found"
    lines = ["## Jobs", "", f"{len(jobs)} jobs: {summary}.", ""]
    if unknown_jobs:
        lines += [f"Which jobs the sweep meant to run is unknown ({unknown_jobs}): these are the jobs found.", ""]
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


def describe(df: pd.DataFrame) -> list[str]:
    """What is constant across the sweep, in one line."""
    parts = [f"{c}={df[c].iloc[0]}" for c in DESCRIPTORS if c in df and df[c].astype(str).nunique() == 1]
    seeds = sorted(df["seed"].unique())
    budgets = sorted(df.loc[df["round"] > 0, "budget"].unique())
    parts += [f"seeds={', '.join(map(str, seeds))}", f"budgets t={', '.join(map(str, budgets))}"]
    return ["## Sweep", "", "; ".join(parts), ""]


def subtitle(df: pd.DataFrame) -> str:
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


def setting_section(
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
    """One setting's accuracy table, paired differences and headline."""
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
        p = paired(chosen[chosen["setting"] == setting], a, b, metric_key("test", m.name), m.higher_is_better)
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


def search_cost_section(
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
        notes.append(f"Figure: [{SEARCH_COST_FIGURE}.png]({SEARCH_COST_FIGURE}.png).")
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
