"""Bool masks at 1 bit per weight: numpy's packbits over the flattened mask, the shape kept in
the file's metadata. numpy only: the report reads packed masks without torch."""

from __future__ import annotations

import json
import math

import numpy as np

PACKED_KEY = "packed_shapes"  # safetensors metadata: {name: shape} of the packed masks


def pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.ascontiguousarray(mask, dtype=bool).reshape(-1))


def unpack(packed: np.ndarray, shape: list[int] | tuple[int, ...]) -> np.ndarray:
    return np.unpackbits(packed, count=math.prod(shape)).astype(bool).reshape(shape)


def shapes(metadata: dict[str, str] | None) -> dict[str, list[int]] | None:
    """The shapes of a packed mask file's tensors; None for a file of plain bool tensors."""
    return json.loads(metadata[PACKED_KEY]) if metadata and PACKED_KEY in metadata else None
