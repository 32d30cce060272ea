"""The library surface: the docs' example (docs/extending.md) of prune_exp's pieces in a user's own Lightning
script runs as written, and the cycle does to the user's module what the app does to its own."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

import prune_exp
from prune_exp.lit.cycle import PruneRetrainCycle

README = Path(__file__).resolve().parent.parent / "docs" / "extending.md"  # where the example lives
SECTION = "## Use the pieces in your own Lightning script"


def readme_example() -> str:
    text = README.read_text()
    after = text[text.index(SECTION) :]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_the_readme_example_runs_and_prunes_the_users_own_module(monkeypatch: pytest.MonkeyPatch) -> None:
    lrs: dict[int, float] = {}
    step = PruneRetrainCycle.on_train_batch_start

    def probe(self, trainer, pl_module, batch, batch_idx):  # the LR the cycle set for each step
        step(self, trainer, pl_module, batch, batch_idx)
        lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]

    monkeypatch.setattr(PruneRetrainCycle, "on_train_batch_start", probe)
    out, scope = io.StringIO(), {"__name__": "readme_example"}
    with contextlib.redirect_stdout(out):
        exec(compile(readme_example(), str(README), "exec"), scope)
    lines = out.getvalue().splitlines()
    expected = [(1, "0.50"), (2, "0.75"), (3, "0.88"), (4, "0.90")]  # iterative, half of the rest each round
    assert [line.split(",")[0] for line in lines] == [f"round {r}: sparsity {s}" for r, s in expected]
    model, pruner, cycle = scope["model"], scope["pruner"], scope["cycle"]
    params = dict(model.net.named_parameters())
    mask = cycle.mask
    assert mask.sparsity(pruner.prunable_names) == pytest.approx(0.9, abs=1e-3)
    for name in pruner.prunable_names:  # the pruned weights of the user's module are exactly 0
        assert torch.equal(params[name][~mask[name]], torch.zeros(int((~mask[name]).sum())))
    # LR rewinding: each 3-epoch round replays the dense schedule from epoch T - t = 3
    spe, dense_lr = len(scope["train"]), scope["dense_lr"]
    assert scope["plan"].lr_start_step == 3 * spe
    assert sorted(lrs) == list(range(pruner.rounds * 3 * spe))
    assert [lrs[g] for g in sorted(lrs)] == [dense_lr(3 + (g % (3 * spe)) / spe) for g in sorted(lrs)]


def test_the_public_names_resolve_and_nothing_else_does() -> None:
    for name in prune_exp.__all__:
        assert getattr(prune_exp, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'Experiment'"):
        prune_exp.Experiment  # noqa: B018
