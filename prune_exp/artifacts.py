"""What a finished job keeps next to its records: the final mask and weights, and depending on
the structure the compacted model (channel) or the weights as CSR (unstructured, N:M)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from prune_exp.cache import save_state
from prune_exp.compact import compact, save_compacted
from prune_exp.csr import save_csr
from prune_exp.efficiency import SPARSE_STRUCTURES
from prune_exp.jobfiles import CSR_FILE, MASK_FILE, WEIGHTS_FILE
from prune_exp.pruning.mask import Mask


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
