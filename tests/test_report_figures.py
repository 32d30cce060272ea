"""Every figure the report draws reads at a glance, as drawn at its own size: no two of its
titles, axis labels or legends run into each other (nor into a tick label), and nothing is
drawn off the canvas."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from report_helpers import FIGURE_DESCRIPTORS, figure_sweep

from prune_exp.report import report_sweep
from prune_exp.report.files import FIGURES


def each_figure(sweep: Path, monkeypatch: pytest.MonkeyPatch, look: Callable[[Figure], object]) -> dict[str, object]:
    """{name: ``look(figure)``} of every figure the report of ``sweep`` writes, each looked at as it
    is about to be written (the report closes it then)."""
    from prune_exp.report import plots

    seen, save = {}, plots.save

    def keep(fig: Figure, files: object, name: str) -> object:
        seen[name] = look(fig)
        return save(fig, files, name)

    monkeypatch.setattr(plots, "save", keep)
    report_sweep(sweep, out=lambda _: None)
    return seen


def texts(fig) -> dict[str, list[tuple[str, object]]]:
    """The figure's texts a reader reads, each (what, artist), by kind: ``words`` (titles, the
    figure's title, axis labels, top and right axes' labels included, and legends) and ``ticks``
    (tick labels); empty and hidden ones left out."""
    # (the figure's title and an axes' left and right titles have no public getter of the Text)
    words = [("figure title", fig._suptitle), *(("figure legend", lg) for lg in fig.legends)]
    ticks = []
    for ax in (a for a in fig.axes if a.get_visible()):
        for child in (ax, *ax.child_axes):
            words += [(f"title {t.get_text()!r}", t) for t in (child.title, child._left_title, child._right_title)]
            for axis in (child.xaxis, child.yaxis):
                words.append((f"axis label {axis.label.get_text()!r}", axis.label))
                ticks += [(f"tick label {t.get_text()!r}", t) for t in drawn_tick_labels(axis)]
        if ax.get_legend() is not None:
            words.append((f"legend of the panel titled {ax.get_title()!r}", ax.get_legend()))

    def shown(a) -> bool:
        return a is not None and a.get_visible() and (not hasattr(a, "get_text") or a.get_text().strip() != "")

    return {"words": [w for w in words if shown(w[1])], "ticks": [t for t in ticks if shown(t[1])]}


def drawn_tick_labels(axis) -> list:
    """The tick labels of ``axis`` that are drawn: those of its ticks in its view."""
    lo, hi = sorted(axis.get_view_interval())
    ticks = [t for t in axis.get_major_ticks() + axis.get_minor_ticks() if lo <= t.get_loc() <= hi]
    return [label for t in ticks for label in (t.label1, t.label2)]


def overlaps(fig) -> list[str]:
    """Each pair of the drawn figure's words (``texts``) whose boxes overlap, and each word
    that overlaps a tick label; and whatever is drawn off the canvas."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = texts(fig)
    boxes = {kind: [(what, a.get_window_extent(renderer)) for what, a in found[kind]] for kind in found}
    pairs = [*itertools.combinations(boxes["words"], 2), *itertools.product(boxes["words"], boxes["ticks"])]
    out = [f"{a} and {b} overlap" for (a, box_a), (b, box_b) in pairs if box_a.overlaps(box_b)]
    drawn, canvas = fig.get_tightbbox(renderer), fig.bbox_inches
    if not (drawn.x0 >= -0.01 and drawn.y0 >= -0.01 and drawn.x1 <= canvas.x1 + 0.01 and drawn.y1 <= canvas.y1 + 0.01):
        where = ", ".join(f"{v:.2f}" for v in (drawn.x0, drawn.y0, drawn.x1, drawn.y1))
        out.append(f"drawn over ({where}) inches, off its {canvas.x1:.2f} x {canvas.y1:.2f} inch canvas")
    return out


@pytest.mark.parametrize(
    ("budgets", "lrs", "names"),
    [
        # one setting, one budget: the sweep's facts end in "t = 45 epochs"; a panel per strategy
        ([45], [0.1], set(FIGURES) - {"accuracy_vs_budget"}),
        # two settings (optim.lr), several budgets: the budget figure; panels in rows
        ([2, 4], [0.1, 0.05], set(FIGURES)),
    ],
    ids=["one-setting-t45", "two-settings-two-budgets"],
)
def test_no_two_titles_axis_labels_or_legends_of_a_figure_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budgets: list[int], lrs: list[float], names: set[str]
) -> None:
    found = each_figure(figure_sweep(tmp_path, budgets, lrs), monkeypatch, overlaps)
    assert set(found) == names
    problems = [f"{name}: {problem}" for name, found_in in found.items() for problem in found_in]
    assert not problems, "\n".join(problems)


def test_the_check_sees_two_panels_titles_run_into_each_other() -> None:
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
    try:
        a.set_title("a title far wider than its panel, as the facts of the sweep were")
        b.set_title("and the title of the next panel")
        assert "title 'and the title of the next panel' overlap" in " | ".join(overlaps(fig))
    finally:
        plt.close(fig)


def test_the_sweeps_facts_are_in_the_figure_title_once_and_each_panel_names_its_strategy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def titles(fig: Figure) -> tuple[str, list[str]]:
        return fig.get_suptitle(), [ax.get_title() for ax in fig.axes if ax.get_visible()]

    found = each_figure(figure_sweep(tmp_path, [45], [0.1]), monkeypatch, titles)
    figure_title, panels = found["layer_sparsity_by_round"]
    facts = [*FIGURE_DESCRIPTORS.values(), "t = 45 epochs"]
    assert figure_title.startswith("Per-layer sparsity after each round") and all(f in figure_title for f in facts)
    assert panels == [
        f"{label} (2 jobs)" for label in ("fine-tuning (FT)", "weight rewinding (WR)", "LR rewinding (LRR)")
    ]
    for name, (figure_title, panels) in found.items():
        assert "t = 45 epochs" in figure_title and not any("t = 45" in p for p in panels), name
