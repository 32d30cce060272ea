"""Efficiency metrics: FLOPs against hand-computed formulas, effective FLOPs of a mask,
parameter bytes, and the per-round columns of a real job."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from helpers import job_config
from safetensors import safe_open
from safetensors.torch import load_file

from prune_exp.app.run import run
from prune_exp.measure.csr import load_csr
from prune_exp.measure.efficiency import effective_flops, flop_profile, measure_speed, param_bytes
from prune_exp.models.cnn1d import CNN1D
from prune_exp.pruning.mask import Mask
from prune_exp.store.records import read_records


def cnn() -> CNN1D:
    torch.manual_seed(0)
    return CNN1D((1, 40), 10)  # convs 1->25 k5 s2, 25->25 k3 s2, 25->25 k3 s2 (padding 1), then 125 -> 10


def test_flops_match_the_conv_and_linear_formulas() -> None:
    # output lengths 19, 10, 5; FLOPs = 2 x multiply-adds
    expected = {
        "conv1": 2 * 25 * 19 * 1 * 5,
        "conv2": 2 * 25 * 10 * 25 * 3,
        "conv3": 2 * 25 * 5 * 25 * 3,
        "classifier": 2 * 125 * 10,
    }
    profile = flop_profile(cnn(), (1, 40))
    assert profile.per_module == expected
    assert profile.total == sum(expected.values())


def test_effective_flops_count_the_multiply_adds_of_nonzero_weights() -> None:
    net = cnn()
    profile = flop_profile(net, (1, 40))
    params = dict(net.named_parameters())
    keep = torch.zeros_like(params["conv2.weight"], dtype=torch.bool)
    kept = 468  # of conv2's 1,875 weights
    keep.view(-1)[:kept] = True
    mask = Mask({**Mask.ones(params, ["conv1.weight", "conv3.weight"]), "conv2.weight": keep})
    assert effective_flops(profile, mask) == profile.total - round(37500 * (1 - kept / 1875))
    dense, nonzero = param_bytes(net, mask)
    total = sum(p.numel() for p in net.parameters())
    assert dense == 4 * total and nonzero == 4 * (total - (1875 - kept))


def test_speed_is_measured_without_touching_the_rng_or_the_mode() -> None:
    net = cnn().train()
    state = torch.get_rng_state()
    latency_ms, throughput = measure_speed(net, (1, 40), batch=64, warmup=1, reps=3)
    assert latency_ms > 0 and throughput > 0 and net.training
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.slow
def test_every_round_records_flops_bytes_speed_and_training_cost(tmp_path: Path, data_dir: Path) -> None:
    overrides = ["debug=fast", "prune.schedule=iterative", "prune.rate=0.5", "prune.sparsity=0.75", "dense.epochs=3"]
    run(job_config(tmp_path, data_dir, [*overrides, "retrain.budget=2", "efficiency.reps=2"]))
    rows = read_records(tmp_path / "job" / "records.jsonl")
    examples = 400 - 40  # debug=fast: 400 of synthetic's training examples (data.max_samples), 10% of them for val
    dense_train = 3 * rows[0]["flops_dense"] * examples * 3
    assert rows[0]["flops_effective"] == rows[0]["flops_dense"] and rows[0]["cum_train_flops"] == dense_train
    for prev, row in itertools.pairwise(rows):
        assert row["train_flops"] == 3 * row["flops_dense"] * examples * 2
        assert row["cum_train_flops"] == prev["cum_train_flops"] + row["train_flops"]
        assert row["theoretical_speedup"] == row["flops_dense"] / row["flops_effective"]
        assert row["flops_effective"] < prev["flops_effective"]
        assert row["param_bytes_nonzero"] == 4 * row["nonzero_params"]
        assert row["latency_ms"] > 0 and row["throughput"] > 0
    assert len({(r["latency_ms"], r["throughput"]) for r in rows}) == 1  # the masked model: timed once a job


@pytest.mark.slow
def test_unstructured_jobs_time_csr_layers_and_export_the_final_weights_as_csr(tmp_path: Path, data_dir: Path) -> None:
    overrides = ["debug=fast", "prune.schedule=iterative", "prune.rate=0.5", "prune.sparsity=0.75", "dense.epochs=3"]
    run(job_config(tmp_path, data_dir, [*overrides, "retrain.budget=2", "efficiency.reps=2"]))
    job = tmp_path / "job"
    rows = read_records(job / "records.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2]
    for row in rows:  # the MLP's linear layers on the CSR kernel, from the dense round on
        assert row["latency_ms_csr"] > 0 and row["throughput_csr"] > 0
    dense = load_file(str(job / "weights.safetensors"))
    sparse = load_csr(job / "final_csr.safetensors")
    assert sparse.keys() == dense.keys()
    for name, t in dense.items():  # bit for bit (a pruned -0.0 comes back as +0.0)
        assert sparse[name].dtype == t.dtype and torch.equal(sparse[name], t), name
        if t.is_floating_point():
            assert torch.equal((sparse[name] + 0).view(torch.int32), (t + 0).view(torch.int32)), name
    mask = Mask.load(job / "mask.safetensors")
    with safe_open(str(job / "final_csr.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["csr"]) == {n: list(dense[n].shape) for n in mask}
        assert sum(f.get_tensor(f"{n}.values").numel() for n in mask) == mask.kept()


@pytest.mark.slow
def test_channel_jobs_export_no_csr(tmp_path: Path, data_dir: Path) -> None:
    overrides = ["debug=fast", "structure=channel", "model.batch_norm=true", "prune.scope=layerwise"]
    run(job_config(tmp_path, data_dir, [*overrides, "efficiency.reps=2"]))
    job = tmp_path / "job"
    rows = read_records(job / "records.jsonl")
    assert (job / "compact.safetensors").exists() and not (job / "final_csr.safetensors").exists()
    assert all("latency_ms_csr" not in r and r["latency_ms_compacted"] > 0 for r in rows)
