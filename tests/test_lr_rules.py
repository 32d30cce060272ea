"""LR rules (retrain.lr_rule) in real runs: ALLR's peak equals its formula computed from the saved
weights before and after each round's pruning; a user's rule from outside the package runs in a
real sweep, its values recorded; a rule that cannot be built or gives no LR is refused, naming
the key."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from safetensors.torch import load_file

from prune_exp.job.artifacts import load_round
from prune_exp.store.files import DENSE_CACHE_DIR, epoch_file
from prune_exp.store.records import read_records

pytestmark = pytest.mark.slow

LR, T, t = 0.05, 3, 1  # a constant dense LR: its max is LR
RUN = [
    "debug=fast",
    f"dense.epochs={T}",
    f"optim.lr={LR}",
    f"retrain.budget={t}",
    "prune.schedule=iterative",
    "prune.rate=0.5",
    "prune.sparsity=0.875",  # three rounds
    "artifacts.every_round=true",  # each round's weights: what the next round prunes
    "efficiency.measure_speed=false",
]

USER_RULE = '''\
"""A user's own LR rule: nothing in here is part of prune_exp."""


class Growing:
    """The peak grows with the round: a fraction of the dense run's max LR, plus what it saw."""

    def __init__(self, fraction):
        self.fraction = fraction

    def __call__(self, facts):
        return {
            "peak": self.fraction * facts.dense_lr["max"] * facts.round,
            "sparsity_seen": facts.sparsity_after,
            "norm_ratio": facts.norm_after / facts.norm_before,
        }
'''

USER_STRATEGY = """\
defaults:
  - /schema_retrain_default@_here_
  - _self_
strategy: growing
lr: linear
lr_rule:
  _target_: userrule.Growing
  fraction: 0.25
short: GRO
"""


def user_dirs(root: Path) -> tuple[Path, Path]:
    code, conf = root / "mycode", root / "myconf"
    code.mkdir()
    (code / "userrule.py").write_text(USER_RULE)
    (conf / "retrain").mkdir(parents=True)
    (conf / "retrain" / "growing.yaml").write_text(USER_STRATEGY)
    return code, conf


def run(tmp_path: Path, *args: str) -> tuple[object, Path]:
    code, conf = user_dirs(tmp_path)
    sweep = tmp_path / "sweep"
    res = run_cli(
        [
            "-m",
            "--config-dir",
            str(conf),
            *RUN,
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={sweep}",
            *args,
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])},
    )
    return res, sweep


def allr_peak(before: dict[str, torch.Tensor], kept_before: dict, kept_after: dict, epochs: float) -> float:
    """clip(d / sqrt(s) * max, min(t/T, 1) * max, max), d and s over the prunable weights."""
    names = list(kept_after)
    dropped = sum(float(before[n].double()[kept_before[n] & ~kept_after[n]].square().sum()) for n in names)
    total = sum(float(before[n].double().square().sum()) for n in names)
    s = 1 - sum(int(kept_after[n].sum()) for n in names) / sum(int(kept_before[n].sum()) for n in names)
    return min(max(math.sqrt(dropped / total) / math.sqrt(s) * LR, min(epochs / T, 1) * LR), LR)


def test_allr_and_a_users_rule_set_each_rounds_peak_in_a_real_sweep(tmp_path: Path) -> None:
    res, sweep = run(tmp_path, "retrain=allr,growing")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = {read_records(d / "records.jsonl")[0]["strategy"]: d for d in (sweep / "0", sweep / "1")}
    allr, growing = (read_records(jobs[s] / "records.jsonl") for s in ("allr", "growing"))
    assert [r["round"] for r in allr] == [0, 1, 2, 3]

    # ALLR, recomputed from the files: the weights before each round's pruning (the dense run's
    # final ones, then each round's retrained ones) and the masks before and after it
    dense = load_file(tmp_path / "cache" / DENSE_CACHE_DIR / allr[0]["dense_hash"] / epoch_file(T))
    mask, _ = load_round(jobs["allr"], 1)
    kept = {n: torch.ones_like(m) for n, m in mask.items()}
    weights = dense
    for r in (1, 2, 3):
        mask, after = load_round(jobs["allr"], r)
        peak = allr_peak(weights, kept, dict(mask), t)
        row = allr[r]
        assert row["lr_peak"] == pytest.approx(peak, rel=1e-9) and json.loads(row["lr_rule"]) == {
            "peak": row["lr_peak"]
        }
        warms = math.floor(0.1 * row["retrain_steps"]) > 0  # BIMP's 10% cosine warmup from 0, then linear to 0
        assert row["lr_start"] == (0.0 if warms else row["lr_peak"]) and 0 < row["lr_end"] < row["lr_peak"]
        assert row["prune_fraction"] == pytest.approx(0.5, abs=0.01)
        kept, weights = dict(mask), after
    assert len({r["lr_peak"] for r in allr[1:]}) == 3  # adaptive: each round its own

    # the user's rule: its peak (linear from it, no warmup) and its own values, as JSON
    for r in (1, 2, 3):
        row = growing[r]
        assert row["lr_peak"] == row["lr_start"] == 0.25 * LR * r
        seen = json.loads(row["lr_rule"])
        assert seen.keys() == {"peak", "sparsity_seen", "norm_ratio"}
        assert (seen["peak"], seen["sparsity_seen"]) == (0.25 * LR * r, row["sparsity"])
        assert seen["norm_ratio"] == pytest.approx(math.sqrt(1 - row["norm_drop"] ** 2), rel=1e-9)  # ||W_p|| / ||W||


def test_a_rule_that_cannot_be_built_is_refused_before_anything_runs(tmp_path: Path) -> None:
    res, sweep = run(tmp_path, "retrain=growing", "retrain.lr_rule._target_=userrule.Shrinking")
    assert res.returncode != 0
    assert "retrain.lr_rule._target_='userrule.Shrinking'" in res.stderr
    assert not (sweep / "0" / "records.jsonl").exists()


def test_a_rule_that_gives_no_finite_lr_fails_its_job_naming_the_key(tmp_path: Path) -> None:
    res, sweep = run(tmp_path, "retrain=growing", "retrain.lr_rule.fraction=nan")
    assert res.returncode != 0
    status = json.loads((sweep / "0" / "status.json").read_text())
    assert status["state"] == "failed"
    assert "retrain.lr_rule gave the peak nan for round 1; allowed: a finite LR > 0" in status["error"]
