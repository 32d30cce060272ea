"""Sparse (CSR) form of an unstructured or N:M pruned model: files and a model that runs on it.

:func:`save_csr` writes a state dict with every masked weight of two or more dimensions in
compressed sparse row form: ``<name>.crow_indices``, ``<name>.col_indices`` and
``<name>.values`` (a conv weight as the 2-D matrix ``(out, in * kh * kw)``); every other
tensor (biases, BatchNorm, unmasked weights) stays dense. The sparsity pattern is the
mask's: exactly the kept entries are stored (a kept weight that happens to be 0 too), so a
file holds ``nnz = mask.kept()`` values. Indices are int32 (int64 only for a matrix too big
for int32): a weight of ``rows`` rows costs ``nnz * (4 + 4) + (rows + 1) * 4`` bytes at
float32 instead of ``rows * cols * 4`` dense, smaller below ~50% density. The original
shapes are in the safetensors metadata, and :func:`load_csr` rebuilds the dense state
dict: every kept entry bit for bit, every pruned entry +0.0 (a weight masked by
multiplication may be -0.0 in the dense file: equal, not bit-equal).

:func:`csr_model` is a copy of a network whose masked ``nn.Linear`` layers compute on CSR
weights (:class:`CSRLinear`), to measure what a sparse kernel gains over the dense one.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from prune_exp.pruning.mask import Mask
from prune_exp.store.atomic import atomic_write

FORMAT = "prune_exp.csr/1"  # the safetensors metadata "format" of a CSR file
PARTS = ("crow_indices", "col_indices", "values")
KERNEL_DTYPES = (torch.float32, torch.float64)  # the CPU (MKL) CSR matmul has no float16 / bfloat16 kernel
INT32_MAX = 2**31 - 1


def _csr_tensor(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CSR tensor with its structure checked (indices in range and sorted rows: a corrupt file
    raises instead of reading out of bounds), without PyTorch's one-time "beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Sparse CSR tensor support is in beta state.*")
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=True)


def _index_dtype(rows: int, cols: int, nnz: int) -> torch.dtype:
    return torch.int32 if max(rows, cols, nnz) <= INT32_MAX else torch.int64


@torch.no_grad()
def csr_parts(weight: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(crow_indices, col_indices, values) of ``weight`` viewed as ``(out, -1)``, on the
    positions ``keep`` keeps (row-major, as CSR orders them); int32 indices where they fit."""
    w = weight.detach().reshape(weight.shape[0], -1)
    k = keep.to(w.device).reshape(w.shape)
    rows, cols = w.shape
    nnz = int(k.sum())
    idx = _index_dtype(rows, cols, nnz)
    crow = torch.zeros(rows + 1, dtype=torch.int64, device=w.device)
    torch.cumsum(k.sum(1), 0, out=crow[1:])
    col = torch.nonzero(k)[:, 1]
    return crow.to(idx), col.to(idx), w[k].contiguous()


def _csr_names(state_dict: Mapping[str, torch.Tensor], mask: Mask) -> list[str]:
    """The masked tensors stored as CSR: those with two or more dimensions (a masked bias stays dense)."""
    names = [n for n in mask if n in state_dict and state_dict[n].dim() >= 2]
    for n in names:
        for part in PARTS:
            if f"{n}.{part}" in state_dict:
                raise ValueError(f"cannot store {n!r} as CSR: the state dict already has {n}.{part}")
    return names


def export_csr(state_dict: Mapping[str, torch.Tensor], mask: Mask) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta): the masked weights as CSR parts, the rest dense (CPU, contiguous);
    ``meta`` maps each CSR weight to its original shape."""
    csr = set(_csr_names(state_dict, mask))
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, list[int]] = {}
    for name, t in state_dict.items():
        if name in csr:
            keep = mask[name]
            if keep.shape != t.shape:
                raise ValueError(f"mask for {name!r} has shape {tuple(keep.shape)}, tensor {tuple(t.shape)}")
            for part, v in zip(PARTS, csr_parts(t, keep), strict=True):
                tensors[f"{name}.{part}"] = v.cpu()
            meta[name] = list(t.shape)
        else:
            tensors[name] = t.detach().cpu().contiguous()
    return tensors, meta


def save_csr(path: str | Path, state_dict: Mapping[str, torch.Tensor], mask: Mask) -> None:
    """Write :func:`export_csr` atomically as safetensors; metadata ``csr``: name -> shape (JSON).
    Equal inputs give equal bytes, whatever the order of the dicts."""
    tensors, meta = export_csr(state_dict, mask)
    data = save(tensors, metadata={"format": FORMAT, "csr": json.dumps(meta, sort_keys=True)})
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(canonical_safetensors(data))


def canonical_safetensors(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its JSON header's keys sorted: safetensors writes the
    metadata from a hash map, in an order that changes from one call to the next. The tensor
    bytes and their offsets stay as they are (safetensors lays tensors out by dtype and name)."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data stays 8-byte aligned, as safetensors pads it
    return len(header).to_bytes(8, "little") + header + data[8 + n :]


def load_csr(path: str | Path) -> dict[str, torch.Tensor]:
    """The dense state dict of a :func:`save_csr` file (CSR structure checked: no memory errors
    from a corrupt file)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a CSR state dict (metadata format {metadata.get('format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta: dict[str, list[int]] = json.loads(metadata["csr"])
    parts = {f"{n}.{p}" for n in meta for p in PARTS}
    out = {name: t for name, t in tensors.items() if name not in parts}
    for name, shape in meta.items():
        crow, col, values = (tensors[f"{name}.{p}"] for p in PARTS)
        size = (shape[0], math.prod(shape[1:]))
        out[name] = _csr_tensor(crow, col, values, size).to_dense().reshape(shape)
    return out


class CSRLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` in CSR form: ``torch.addmm(b, W, x^T)^T`` (sparse x dense).

    The CSR parts are plain buffers (``crow_indices``, ``col_indices``, ``values``: a sparse
    tensor can be neither deep-copied nor saved by safetensors); the sparse tensor over them
    is a view built at every call (microseconds). ``W @ x^T`` is the orientation the CPU
    (MKL) CSR kernel is fast at: on a 4096 x 4096 layer at 95% sparsity, ``F.linear`` on a
    CSR weight was ~5x slower at batch 64, ``x @ W^T`` with a CSR ``W^T`` slower still (not
    timed on CUDA, where the same ``addmm`` runs on cuSPARSE).
    """

    def __init__(self, linear: nn.Linear, keep: torch.Tensor) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        crow, col, values = csr_parts(linear.weight, keep)
        self.register_buffer("crow_indices", crow)
        self.register_buffer("col_indices", col)
        self.register_buffer("values", values)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        _csr_tensor(crow, col, values, (self.out_features, self.in_features))  # checked once, here

    def weight_csr(self) -> torch.Tensor:
        size = (self.out_features, self.in_features)
        return torch.sparse_csr_tensor(self.crow_indices, self.col_indices, self.values, size, check_invariants=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        w = self.weight_csr()
        y = torch.sparse.mm(w, x2.T) if self.bias is None else torch.addmm(self.bias.unsqueeze(1), w, x2.T)
        return y.T.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.values.numel()}, bias={self.bias is not None}"
        )


def csr_linear_names(net: nn.Module, mask: Mask) -> list[str]:
    """The ``nn.Linear`` modules :func:`csr_model` converts: those whose weight ``mask`` masks,
    in float32 or float64 (a ``bf16-true`` / ``16-true`` run has none)."""
    return [
        n
        for n, m in net.named_modules()
        if isinstance(m, nn.Linear) and f"{n}.weight" in mask and m.weight.dtype in KERNEL_DTYPES
    ]


def csr_model(net: nn.Module, mask: Mask) -> nn.Module:
    """A deep copy of ``net`` (eval mode) whose masked ``nn.Linear`` layers are :class:`CSRLinear`.

    It computes what the masked dense net computes (to float rounding: the sparse kernel sums
    in another order). Only linear layers are converted (:func:`csr_linear_names`):
    convolutions stay dense, as PyTorch has no sparse convolution kernel, and so do unmasked
    linear layers.
    """
    names = csr_linear_names(net, mask)
    out = copy.deepcopy(net).eval()
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name)
        setattr(parent, child, CSRLinear(getattr(parent, child), mask[f"{name}.weight"]).eval())
    return out
