"""Distributed (DDP) helpers: which rank this process is, and the few syncs a job needs.

With ``trainer.strategy=ddp`` every rank runs the whole job: Lightning starts the other
ranks at the first ``Trainer.fit`` of a single run (or SLURM starts one task per rank).
Only rank 0 writes files (status, records, cache, checkpoints); the others train along and
prune with the same (checked) masks.
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist


def global_rank() -> int:
    """This process's rank, from the environment Lightning or SLURM sets (0 when alone).

    The same order as Lightning's ``rank_zero_only``: before the first ``fit`` of a single run
    nothing is set and the process that will become rank 0 is rank 0."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def is_main() -> bool:
    return global_rank() == 0


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if initialized():
        dist.barrier()


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and bytes: equal digests mean equal tensors."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel():  # an empty tensor (no val split) has no bytes, and no stride to view them by
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def check_same_on_every_rank(what: str, digest: str) -> None:
    """RuntimeError unless every rank passes the same digest (no-op without a process group)."""
    if not initialized():
        return
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"{what} differs across ranks: {digests}")
