"""CSR export of unstructured masks: the file round-trips the dense weights exactly and is
smaller by the CSR byte count; the CSR model computes what the masked dense model does."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from prune_exp.measure.csr import CSRLinear, csr_linear_names, csr_model, export_csr, load_csr, save_csr
from prune_exp.models.cnn1d import CNN1D
from prune_exp.models.mlp import MLP
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.mask import Mask
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import NM, Unstructured
from prune_exp.store.dense_cache import save_state

MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: MLP((1, 12), 4, hidden=[16, 16], batch_norm=True), (1, 12)),
    "lenet300": (lambda: MLP((1, 28, 28), 10, hidden=[300, 100]), (1, 28, 28)),
    "cnn1d": (lambda: CNN1D((1, 40), 10), (1, 40)),
}


def masked(name: str, sparsity: float = 0.9) -> tuple[nn.Module, Mask, tuple[int, ...]]:
    """A model pruned by the real Pruner (global magnitude), its weights masked."""
    build, shape = MODELS[name]
    torch.manual_seed(0)
    net = build()
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine terms
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    pruner = Pruner(net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=[sparsity])
    mask = pruner.prune(pruner.initial_mask(), 1)
    mask.apply_(dict(net.named_parameters()))
    return net.eval(), mask, shape


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit pattern, with -0.0 read as +0.0 (a weight masked by multiplying by 0
    is -0.0 where it was negative; CSR stores no pruned entry, so it comes back as +0.0)."""
    t = t + 0 if t.is_floating_point() else t
    return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}[t.element_size()])


def data_bytes(path: Path) -> int:
    """A safetensors file's tensor bytes: the file minus its 8-byte length and JSON header."""
    raw = path.read_bytes()
    (header,) = struct.unpack("<Q", raw[:8])
    return len(raw) - 8 - header


@pytest.mark.parametrize("name", sorted(MODELS))
def test_csr_file_round_trips_the_dense_state_bit_for_bit(name: str, tmp_path: Path) -> None:
    net, mask, _ = masked(name)
    state = net.state_dict()
    first = next(iter(mask))  # a kept weight that is exactly 0 is stored, and stays 0
    with torch.no_grad():
        state[first].view(-1)[torch.nonzero(mask[first].view(-1))[0]] = 0.0
    save_csr(tmp_path / "w.safetensors", state, mask)
    again = load_csr(tmp_path / "w.safetensors")
    assert again.keys() == state.keys()
    for k, v in state.items():
        assert again[k].dtype == v.dtype and again[k].shape == v.shape, k
        assert torch.equal(bits(again[k]), bits(v)), k
    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as f:
        shapes = json.loads(f.metadata()["csr"])
        assert shapes == {n: list(state[n].shape) for n in mask}
        assert all(f.get_tensor(f"{n}.col_indices").dtype == torch.int32 for n in mask)


def test_csr_file_is_smaller_by_exactly_the_csr_byte_count(tmp_path: Path) -> None:
    net, mask, _ = masked("lenet300")
    state = net.state_dict()
    save_csr(tmp_path / "csr.safetensors", state, mask)
    save_state(tmp_path / "dense.safetensors", state)
    dense = sum(v.numel() * v.element_size() for v in state.values())
    assert data_bytes(tmp_path / "dense.safetensors") == dense
    csr = dense
    for keep in mask.values():
        rows, nnz = keep.shape[0], int(keep.sum())
        # float32 values, int32 column indices, int32 row pointers, instead of the dense matrix
        csr += nnz * 4 + nnz * 4 + (rows + 1) * 4 - keep.numel() * 4
    assert data_bytes(tmp_path / "csr.safetensors") == csr
    assert mask.sparsity() == pytest.approx(0.9, abs=1e-5)
    assert csr < 0.25 * dense  # 10% density: ~8 bytes per kept weight instead of 4 per weight
    assert (tmp_path / "csr.safetensors").stat().st_size < 0.25 * (tmp_path / "dense.safetensors").stat().st_size


def test_conv_weights_are_stored_as_2d_matrices_and_other_tensors_dense() -> None:
    net, mask, _ = masked("cnn1d")
    tensors, meta = export_csr(net.state_dict(), mask)
    w = net.state_dict()["conv2.weight"]  # (25, 25, 3)
    assert meta["conv2.weight"] == [25, 25, 3]
    assert tensors["conv2.weight.crow_indices"].shape == (26,)
    assert int(tensors["conv2.weight.crow_indices"][-1]) == int(mask["conv2.weight"].sum())
    ref = w.reshape(25, 75).to_sparse_csr()
    assert torch.equal(tensors["conv2.weight.values"], ref.values())
    assert torch.equal(tensors["conv2.weight.col_indices"].long(), ref.col_indices())
    assert "conv2.weight" not in tensors and torch.equal(tensors["conv2.bias"], net.state_dict()["conv2.bias"])


def test_load_refuses_other_files_and_broken_csr_structure(tmp_path: Path) -> None:
    net, mask, _ = masked("mlp")
    save_state(tmp_path / "dense.safetensors", net.state_dict())
    with pytest.raises(ValueError, match="not a CSR state dict"):
        load_csr(tmp_path / "dense.safetensors")
    tensors, meta = export_csr(net.state_dict(), mask)
    tensors["fc1.weight.col_indices"][0] = 10_000  # a column index past the matrix
    save_file(
        tensors,
        str(tmp_path / "bad.safetensors"),
        metadata={"format": "prune_exp.csr/1", "csr": json.dumps(meta)},
    )
    with pytest.raises(RuntimeError, match="col_indices"):
        load_csr(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_csr_model_matches_the_masked_dense_model(name: str) -> None:
    net, mask, shape = masked(name)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sparse = csr_model(net, mask)
    linear = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    assert csr_linear_names(net, mask) == linear
    for n, m in sparse.named_modules():
        if n in linear:
            assert isinstance(m, CSRLinear) and m.values.numel() == int(mask[f"{n}.weight"].sum())
        else:  # convolutions stay dense
            assert not isinstance(m, nn.Linear)
    torch.manual_seed(1)
    for batch in (1, 64):
        x = torch.randn(batch, *shape)
        with torch.no_grad():
            assert (sparse(x) - net(x)).abs().max().item() <= 1e-5
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the original is untouched


def test_csr_linear_handles_no_bias_leading_dims_and_float64() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(50, 30, bias=False).double()
    keep = torch.rand(30, 50) > 0.8
    with torch.no_grad():
        lin.weight.mul_(keep)
    layer = CSRLinear(lin, keep)
    x = torch.randn(2, 5, 50, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(layer(x), lin(x), atol=1e-12, rtol=0)
    assert layer(x).shape == (2, 5, 30) and layer.crow_indices.dtype == torch.int32


def test_half_precision_linear_layers_stay_dense() -> None:
    net, mask, _ = masked("mlp")
    net = net.to(torch.bfloat16)  # a bf16-true run: the CPU CSR kernel has no bfloat16 matmul
    assert csr_linear_names(net, mask) == []
    assert not any(isinstance(m, CSRLinear) for m in csr_model(net, mask).modules())
    with torch.no_grad():
        assert math.isfinite(float(csr_model(net, mask)(torch.randn(2, 1, 12, dtype=torch.bfloat16)).sum()))


def test_nm_masks_export_and_run_as_csr(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = MLP((1, 28, 28), 10, hidden=[300, 100]).eval()
    pruner = Pruner(net, criterion=Magnitude(), structure=NM(2, 4), scope="layerwise", sparsities=[0.5])
    mask = pruner.prune(pruner.initial_mask(), 1)
    mask.apply_(dict(net.named_parameters()))
    save_csr(tmp_path / "nm.safetensors", net.state_dict(), mask)
    again = load_csr(tmp_path / "nm.safetensors")
    assert all(torch.equal(bits(again[k]), bits(v)) for k, v in net.state_dict().items())
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert (csr_model(net, mask)(x) - net(x)).abs().max().item() <= 1e-5


def test_equal_inputs_give_equal_bytes_whatever_the_dict_order(tmp_path: Path) -> None:
    """safetensors writes its metadata from a hash map (its order changes from call to call):
    the file's bytes must not, nor may the state dict's or the mask's insertion order matter."""
    net, mask, _ = masked("cnn1d")
    state = net.state_dict()
    reordered_state = dict(reversed(list(state.items())))
    reordered_mask = Mask({n: mask[n] for n in reversed(list(mask))})
    files = []
    for i in range(12):  # a 1-in-2 chance per save of another metadata order without the fix
        s, m = (state, mask) if i % 2 else (reordered_state, reordered_mask)
        save_csr(tmp_path / f"{i}.safetensors", s, m)
        files.append((tmp_path / f"{i}.safetensors").read_bytes())
    assert all(f == files[0] for f in files)
    loaded = load_csr(tmp_path / "0.safetensors")
    assert all(torch.equal(bits(loaded[n]), bits(t)) for n, t in state.items())
