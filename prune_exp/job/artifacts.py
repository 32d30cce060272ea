"""What a job keeps next to its records: every round's mask (and weights, if asked), then the
final mask and weights and, depending on the structure, the compacted model (channel) or the
weights as CSR (unstructured, N:M). :func:`load_round` reads any round back, as OpenLTH lets a
user pick any level."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from prune_exp.measure.compact import compact, save_compacted
from prune_exp.measure.csr import save_csr
from prune_exp.measure.efficiency import SPARSE_STRUCTURES
from prune_exp.pruning.mask import Mask
from prune_exp.store.dense_cache import save_state
from prune_exp.store.files import CSR_FILE, MASK_FILE, WEIGHTS_FILE, round_mask_file, round_weights_file


def save_round(job_dir: Path, round_: int, mask: Mask, net: nn.Module | None, prunable: list[str]) -> None:
    """The round's mask, packed at 1 bit per weight, and its weights (after retraining) if ``net``."""
    (job_dir / round_mask_file(round_)).parent.mkdir(exist_ok=True)
    mask.save(job_dir / round_mask_file(round_), prunable=prunable, packed=True)
    if net is not None:
        save_state(job_dir / round_weights_file(round_), net.state_dict())


def load_round(job_dir: str | Path, round_: int) -> tuple[Mask, dict[str, torch.Tensor] | None]:
    """Round ``round_``'s mask and its weights (None unless the job ran with artifacts.every_round)."""
    job_dir = Path(job_dir)
    path = job_dir / round_mask_file(round_)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no round {round_} in {job_dir} (rounds are 1 to the job's last)")
    weights = job_dir / round_weights_file(round_)
    return Mask.load(path), (load_file(str(weights)) if weights.exists() else None)


def save_artifacts(
    job_dir: Path,
    net: nn.Module,
    mask: Mask,
    *,
    prunable: list[str],
    structure: str,
    input_shape: tuple[int, ...],
    output_layers: set[str],
    compacted: tuple[nn.Module, list] | None,
    export_csr: bool,
) -> None:
    """Write the final artifacts into ``job_dir``. ``compacted``: the last round's compacted
    model when this process measured it (None after a resume past the last round: compacted now)."""
    mask.save(job_dir / MASK_FILE, prunable=prunable)
    save_state(job_dir / WEIGHTS_FILE, net.state_dict())
    if structure == "channel":  # compact.safetensors + compact.json, next to the masked model
        save_compacted(job_dir, *(compacted or compact(net, mask, input_shape, skip=output_layers)))
    if structure in SPARSE_STRUCTURES and export_csr:
        save_csr(job_dir / CSR_FILE, net.state_dict(), mask)
