"""Content digests, defined once: of a file's bytes, and of a JSON-able tree (canonical JSON).
The dense cache, the job cache and the report verify what they read with them. Standard
library only: the report imports it without torch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_sha256(path: str | Path) -> str:
    """The sha256 of the file's bytes, hex (read now, in blocks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def canonical_sha256(tree: Any) -> str:
    """The sha256 of ``tree`` as canonical JSON (sorted keys, no spaces), hex."""
    return hashlib.sha256(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
