"""DDP on CPU with two processes (gloo): the masks are identical on every rank, and the run
is the one-process run up to the order of float sums."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import run_cli
from safetensors.torch import load_file

from prune_exp.dist import tensors_digest
from prune_exp.store.records import VOLATILE, read_records

pytestmark = pytest.mark.slow

# diagnostics computed from the weights' values, which DDP's all-reduce changes at float rounding
WEIGHT_FUNCTIONS = ("norm_drop", "norm_drop_all", "pruned_loss_increase")

# 576 training examples = 9 batches of 64: each rank's 32 + 32 are the one-process batch.
ARGS = [
    "debug=fast",
    "data.num_samples=800",
    "data.batch_size=64",
    "prune.schedule=iterative",
    "prune.rate=0.5",
    "prune.sparsity=0.75",
    "dense.epochs=3",
    "retrain.budget=2",
]


def test_two_process_ddp_prunes_identically_on_every_rank_and_matches_one_process(tmp_path: Path) -> None:
    res = run_cli([*ARGS, "trainer=ddp", "hydra.run.dir=outputs/ddp"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    single = run_cli([*ARGS, "hydra.run.dir=outputs/single"], cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp_dir, single_dir = tmp_path / "outputs/ddp", tmp_path / "outputs/single"

    # Each rank logs its own mask digest per round (rank 1 into Lightning's per-process log).
    digests = {}
    for log in ("run.log", "train_ddp_process_1.log"):
        found = re.findall(r"round (\d+): mask sha256 (\w+) \(rank (\d)\)", (ddp_dir / log).read_text())
        digests[log] = [(int(r), d) for r, d, _ in found]
        assert {int(rank) for *_, rank in found} == {0 if log == "run.log" else 1}
    assert digests["run.log"] == digests["train_ddp_process_1.log"]
    rows = read_records(ddp_dir / "records.jsonl")
    assert [(r["round"], r["mask_sha256"]) for r in rows[1:]] == digests["run.log"]
    assert rows[-1]["mask_sha256"] == tensors_digest(load_file(ddp_dir / "mask.safetensors"))
    assert {r["world_size"] for r in rows} == {2}

    # The same run as one process: same masks and accuracies, losses equal to float rounding.
    ones = read_records(single_dir / "records.jsonl")
    assert len(rows) == len(ones) == 3 and rows[0]["dense_hash"] != ones[0]["dense_hash"]
    for r, o in zip(rows, ones, strict=True):
        for k, v in r.items():
            if k in (*VOLATILE, "world_size", "overrides", "dense_hash"):
                continue
            if k.endswith("_loss") or k in WEIGHT_FUNCTIONS:
                assert v == pytest.approx(o[k], rel=1e-5), k
            else:
                assert v == o[k], k


def test_ddp_in_a_local_multirun_is_refused_before_anything_runs(tmp_path: Path) -> None:
    res = run_cli(["-m", "debug=fast", "trainer=ddp", "seed=0,1"], cwd=tmp_path)
    assert res.returncode != 0
    assert "trainer.strategy=ddp with 2 processes in a multirun" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "outputs").exists()
