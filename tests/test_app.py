"""End to end: the real app, in process (fast) and through the CLI (as a user runs it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from helpers import job_config, run_cli, run_in_process
from hydra.utils import instantiate
from safetensors.torch import load_file

from prune_exp.app.run import run
from prune_exp.lit.module import PruneModule
from prune_exp.measure.compact import load_compacted
from prune_exp.models.init import build_net
from prune_exp.pruning.mask import Mask
from prune_exp.retrain.strategies import builtin_strategies
from prune_exp.store.columns import COLUMNS, JOB_COLUMNS, RoundInfo, all_names, markdown_table
from prune_exp.store.records import VOLATILE, read_records

pytestmark = pytest.mark.slow

SMALL = [
    "debug=fast",
    "prune.schedule=iterative",
    "prune.rate=0.5",
    "prune.sparsity=0.75",
    "dense.epochs=3",
    "retrain.budget=2",
]
# Every column a job of SMALL has in every row (columns.py): its synthetic data has <= 5 classes
RECORD_KEYS = {
    n for c in COLUMNS if c.when in ("always", "efficiency.measure_speed") for n in c.names() if "acc_top5" not in n
}


def test_docs_records_md_holds_the_column_table_of_columns_py() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "records.md").read_text()
    table = text[text.index("<!-- columns -->\n") + len("<!-- columns -->\n") : text.index("<!-- /columns -->")]
    assert table == markdown_table()


@pytest.mark.parametrize("strategy", builtin_strategies())
def test_every_strategy_runs_and_records_every_round(tmp_path: Path, data_dir: Path, strategy: str) -> None:
    cfg = job_config(tmp_path, data_dir, [*SMALL, f"retrain={strategy}"])
    value = run(cfg)
    job = tmp_path / "job"
    rows = read_records(job / "records.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert RECORD_KEYS <= r.keys(), RECORD_KEYS - r.keys()
        assert r.keys() <= all_names(), r.keys() - all_names()  # every column is defined in columns.py
        assert {f.name for f in fields(RoundInfo)} | set(JOB_COLUMNS) <= r.keys()  # its round and job columns
        assert r["strategy"] == strategy and r["dataset"] == "synthetic" and r["model"] == "mlp"
        assert r["compression"] == pytest.approx(r["total_params"] / r["nonzero_params"])
    assert all(f"pruned_{k}" in rows[1] for k in ("val_acc", "test_acc", "val_loss", "test_loss"))
    assert rows[0]["sparsity"] == 0 and rows[0]["cum_epochs"] == 3
    assert rows[1]["target_sparsity"] == 0.5 and rows[2]["target_sparsity"] == 0.75
    n = rows[2]["prunable_params"]
    assert abs(rows[2]["sparsity"] * n - 0.75 * n) <= 0.5
    per_round = {"lottery": 3, "reinit": 3, "none": 0}.get(strategy, 2)
    assert [r["retrain_epochs"] for r in rows[1:]] == [per_round] * 2
    assert rows[2]["cum_epochs"] == 3 + 2 * per_round
    assert value == rows[2]["val_acc"]

    # The saved mask and weights are the final model: reload them (no pickle) and re-measure.
    mask = Mask.load(job / "mask.safetensors")
    assert mask.pruned() == rows[2]["total_params"] - rows[2]["nonzero_params"]
    state = load_file(str(job / "weights.safetensors"))
    for name, m in mask.items():
        assert torch.equal(state[name][~m], torch.zeros(int((~m).sum())))
    dm = instantiate(cfg.data, data_dir=str(data_dir))
    dm.setup()
    net = build_net(cfg.model, dm.input_shape, dm.num_classes)
    net.load_state_dict(state)
    assert PruneModule(net, None, dm.num_classes).evaluate(dm.test_dataloader())["acc"] == rows[2]["test_acc"]


def test_a_second_job_reuses_the_dense_run(tmp_path: Path, data_dir: Path) -> None:
    run(job_config(tmp_path, data_dir, [*SMALL, "retrain=finetune"], job="a"))
    run(job_config(tmp_path, data_dir, [*SMALL, "retrain=weight_rewind", "prune/criterion=random"], job="b"))
    a, b = read_records(tmp_path / "a" / "records.jsonl"), read_records(tmp_path / "b" / "records.jsonl")
    assert (a[0]["dense_cached"], b[0]["dense_cached"]) == (False, True)
    assert a[0]["dense_hash"] == b[0]["dense_hash"] and a[0]["test_acc"] == b[0]["test_acc"]
    assert len(list((tmp_path / "outputs" / "cache" / "dense").glob("*/meta.json"))) == 1


@pytest.mark.parametrize("extra", [["retrain=lr_rewind"], ["retrain=reinit", "prune/criterion=random"]])
def test_same_config_and_seed_give_identical_records(tmp_path: Path, data_dir: Path, extra: list[str]) -> None:
    def records(root: str, seed: int = 0) -> list[dict]:
        run(job_config(tmp_path / root, data_dir, [*SMALL, *extra, f"seed={seed}"]))
        rows = read_records(tmp_path / root / "job" / "records.jsonl")
        # (the overrides name each root's paths here; test_resume compares them too)
        return [{k: v for k, v in r.items() if k not in (*VOLATILE, "overrides")} for r in rows]

    a, b, other_seed = records("a"), records("b"), records("c", seed=1)
    assert a == b  # every column but wall times and the job dir, bit for bit
    assert [r["test_loss"] for r in a] != [r["test_loss"] for r in other_seed]


@pytest.mark.parametrize(
    "extra",
    [
        ["prune/criterion=taylor", "prune.criterion.batches=3", "structure=channel"],
        ["structure=nm", "prune.schedule=one_shot", "prune.sparsity=0.5"],
    ],
)
def test_taylor_and_nm_run_end_to_end(tmp_path: Path, data_dir: Path, extra: list[str]) -> None:
    run(job_config(tmp_path, data_dir, [*SMALL, *extra]))
    rows = read_records(tmp_path / "job" / "records.jsonl")
    mask = Mask.load(tmp_path / "job" / "mask.safetensors")
    if "structure=nm" in extra:
        assert [r["round"] for r in rows] == [0, 1] and rows[1]["sparsity"] == 0.5
        for name, m in mask.items():
            assert (m.reshape(m.shape[0], -1, 4).sum(-1) == 2).all(), name
    else:
        assert rows[-1]["criterion"] == "taylor" and rows[-1]["sparsity"] > 0


def test_channel_structure_runs_end_to_end(tmp_path: Path, data_dir: Path) -> None:
    cfg = job_config(
        tmp_path, data_dir, [*SMALL, "structure=channel", "model.batch_norm=true", "prune.scope=layerwise"]
    )
    run(cfg)
    rows = read_records(tmp_path / "job" / "records.jsonl")
    assert rows[-1]["structure"] == "channel" and rows[-1].keys() <= all_names()  # compaction's columns too
    # the compacted model: fewer FLOPs than the masked model's non-zero weights suggest, and
    # its files reload into a model that computes what the saved masked weights compute
    assert rows[-1]["flops_compacted"] <= rows[-1]["flops_effective"] < rows[-1]["flops_dense"]
    assert rows[-1]["params_compacted"] < rows[-1]["total_params"] and rows[-1]["latency_ms_compacted"] > 0
    dm = instantiate(cfg.data, data_dir=str(data_dir))
    dm.setup()

    def build():
        return build_net(cfg.model, dm.input_shape, dm.num_classes)

    masked = build().eval()
    masked.load_state_dict(load_file(str(tmp_path / "job" / "weights.safetensors")))
    small = load_compacted(tmp_path / "job", build, dm.input_shape)
    x = dm.test.x[:64]
    with torch.no_grad():
        assert (small(x) - masked(x)).abs().max() <= 1e-4
    assert rows[-1]["sparsity_all"] > rows[-1]["sparsity"] * rows[-1]["prunable_params"] / rows[-1]["total_params"]


# ------------------------------------------------------------------------------ the CLI
def test_compare_multirun_trains_one_dense_model_and_prints_the_comparison(tmp_path: Path, data_dir: Path) -> None:
    """The main job's config, shrunk: FT, WR and LRR share one dense run; the table is printed."""
    res = run_cli(
        [
            "-m",
            "experiment=compare",
            "seed=0",
            f"paths.data_dir={data_dir}",
            "dense.epochs=4",
            "optim.schedule.milestones=[2,3]",
            "retrain.budget=3",
            "prune.sparsity=0.5",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    records = sorted((tmp_path / "outputs" / "compare" / "multiruns").glob("*/*/records.jsonl"))
    rows = [read_records(p) for p in records]
    assert sorted(r[0]["strategy"] for r in rows) == ["finetune", "lr_rewind", "weight_rewind"]
    assert sorted(r[0]["dense_cached"] for r in rows) == [False, True, True]
    assert len({r[0]["dense_hash"] for r in rows}) == 1
    assert len(list((tmp_path / "outputs" / "cache" / "dense").glob("*/meta.json"))) == 1
    assert all(len(r) == 5 for r in rows)  # dense + 4 rounds: 0.2, 0.36, 0.488, 0.5
    out = res.stdout
    assert "finetune" in out and "weight_rewind" in out and "lr_rewind" in out and "Sweep report" in out
    sweep = next((tmp_path / "outputs" / "compare" / "multiruns").iterdir())
    summary = (sweep / "summary.md").read_text()
    assert "3 jobs: 3 done." in summary and "LRR − WR" in summary
    dense_acc = 100 * rows[0][0]["test_acc"]
    assert re.search(rf"\| 0 \(dense\) +\| 1\.00× +\| {dense_acc:.2f} \(1\)", summary)
    for name in ("results.csv", "accuracy_vs_compression.png", "layer_sparsity.svg"):
        assert (sweep / name).stat().st_size > 1000, name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune.sparsity=1.5"], "prune.sparsity=1.5 is not allowed; allowed: a number in [0.0, 1.0)"),
        (
            ["-m", "retrain=finetune,weight_rewind", "retrain.budget=99"],
            "retrain.budget=99 is not allowed; allowed: 1..60 for weight_rewind",
        ),
        (["prune.exclude=[nothing.*]"], "prune.exclude pattern 'nothing.*' matches no prunable parameter"),
        (["retrain=finetuning"], "Could not find 'retrain/finetuning'"),
        (["prune.sparsty=0.5"], "sparsty"),
        (["data=mnist", "model=mlp", "data.download=false"], "MNIST is not in"),
        (["data=fashion_mnist", "model=mlp"], "(missing: train-images-idx3-ubyte, "),  # offline here
    ],
)
def test_bad_input_fails_before_anything_is_written(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "outputs").mkdir()
    earlier = tmp_path / "outputs" / "earlier.txt"
    earlier.write_text("an earlier result")
    code, err = run_in_process(tmp_path, args)
    assert code != 0
    assert message in err, err[-2000:]
    assert "Traceback" not in err
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["outputs", "outputs/earlier.txt"]
    assert earlier.read_text() == "an earlier result"


def test_job_config_is_saved_with_the_job(tmp_path: Path, data_dir: Path) -> None:
    res = run_cli([*SMALL, f"paths.data_dir={data_dir}", "hydra.run.dir=outputs/one"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    job = tmp_path / "outputs" / "one"
    assert {"records.jsonl", "mask.safetensors", "weights.safetensors", ".hydra", "run.log"} <= {
        p.name for p in job.iterdir()
    }
    rows = read_records(job / "records.jsonl")
    assert rows[-1]["overrides"][:2] == SMALL[:2] and rows[-1]["job_dir"] == str(job)
    assert json.loads(json.dumps(rows[-1]))["round"] == 2


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["experiment=compare", "--cfg", "job"]])
def test_commands_that_train_nothing_do_not_import_torch(tmp_path: Path, args: list[str]) -> None:
    """--help and --cfg answer in well under a second: no torch, Lightning or torchmetrics
    (~4 s of imports here) on their path (scripts/bench_startup.py times them)."""
    code = (
        "import sys\n"
        "sys.argv = ['prune-exp', *sys.argv[1:]]\n"
        "from prune_exp.app.run import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = [m for m in ('torch', 'lightning', 'torchmetrics', 'torchvision') if m in sys.modules]\n"
        "assert not heavy, f'imported {heavy}'\n"
    )
    res = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert ("prune-exp" in res.stdout) if args == ["--help"] else ("retrain:" in res.stdout)
