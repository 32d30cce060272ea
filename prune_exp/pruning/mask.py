"""Mask: a validated bool keep-mask per parameter (True = kept), saved with safetensors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from prune_exp.store import bitpack
from prune_exp.store.atomic import atomic_write


class Mask(Mapping[str, torch.Tensor]):
    """Immutable mapping parameter name -> bool tensor; parameters not in it are never masked."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor) or t.dtype != torch.bool:
                raise TypeError(f"mask for {name!r} must be a bool tensor, got {getattr(t, 'dtype', type(t))}")
        self._t = dict(tensors)

    @classmethod
    def ones(cls, params: Mapping[str, torch.Tensor], names: Iterable[str]) -> Mask:
        """A mask that keeps everything for the named parameters."""
        return cls({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})

    # ---- Mapping
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._t[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Mask)
            and self._t.keys() == other._t.keys()
            and all(torch.equal(self._t[k].cpu(), other._t[k].cpu()) for k in self._t)
        )

    __hash__ = None  # type: ignore[assignment]

    # ---- counts
    def _names(self, names: Iterable[str] | None) -> list[str]:
        return list(self._t) if names is None else [n for n in names if n in self._t]

    def numel(self, names: Iterable[str] | None = None) -> int:
        return sum(self._t[n].numel() for n in self._names(names))

    def kept(self, names: Iterable[str] | None = None) -> int:
        return sum(int(self._t[n].sum()) for n in self._names(names))

    def pruned(self, names: Iterable[str] | None = None) -> int:
        return self.numel(names) - self.kept(names)

    def sparsity(self, names: Iterable[str] | None = None) -> float:
        """Fraction of the (named) masked entries that are pruned."""
        n = self.numel(names)
        return self.pruned(names) / n if n else 0.0

    def layer_sparsity(self) -> dict[str, float]:
        return {n: 1.0 - float(t.float().mean()) for n, t in self._t.items()}

    # ---- relations and use
    def check_against(self, params: Mapping[str, torch.Tensor]) -> None:
        """Raise ValueError unless every masked name exists in ``params`` with the same shape."""
        for n, t in self._t.items():
            if n not in params:
                raise ValueError(f"mask names {n!r}, which the model does not have")
            if params[n].shape != t.shape:
                raise ValueError(f"mask for {n!r} has shape {tuple(t.shape)}, parameter {tuple(params[n].shape)}")

    def is_subset_of(self, other: Mask) -> bool:
        """True if everything this mask keeps, ``other`` keeps too (masks only shrink)."""
        return all(n in other and not bool((t & ~other[n].to(t.device)).any()) for n, t in self._t.items())

    @torch.no_grad()
    def apply_(self, params: Mapping[str, torch.Tensor]) -> None:
        """Zero the pruned entries of ``params`` in place."""
        for n, t in self._t.items():
            p = params[n]
            p.mul_(t.to(device=p.device, dtype=p.dtype))

    def to(self, device: torch.device | str) -> Mask:
        return Mask({n: t.to(device) for n, t in self._t.items()})

    # ---- persistence
    def save(self, path: str | Path, prunable: Iterable[str] | None = None, *, packed: bool = False) -> None:
        """Write atomically as safetensors (no pickle: loading can never run code); ``packed``:
        at 1 bit per entry (bitpack.py), for a job's every-round masks.

        ``prunable`` names the scored weights (the rest are masked along with them, like a
        pruned channel's bias); it is kept in the file's metadata for reports.
        """
        meta = {"prunable": json.dumps(list(prunable))} if prunable is not None else {}
        tensors = {n: t.detach().cpu().contiguous() for n, t in self._t.items()}
        if packed:
            meta[bitpack.PACKED_KEY] = json.dumps({n: list(t.shape) for n, t in tensors.items()})
            tensors = {n: torch.from_numpy(bitpack.pack(t.numpy())) for n, t in tensors.items()}
        with atomic_write(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta or None)

    @classmethod
    def load(cls, path: str | Path) -> Mask:
        """A mask file, plain or packed."""
        with safe_open(str(path), framework="numpy") as f:
            shapes = bitpack.shapes(f.metadata())
            if shapes is None:
                return cls(load_file(str(path)))
            return cls({n: torch.from_numpy(bitpack.unpack(f.get_tensor(n), shapes[n])) for n in f.keys()})
