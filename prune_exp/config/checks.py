"""The checks every section of the config shares: one error per bad value, naming the key and
the allowed values."""

from __future__ import annotations

import math
from typing import Any

from prune_exp.errors import ConfigError


def fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}")


def choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise fail(key, value, "one of " + ", ".join(choices))


def in_range(key: str, value: float, lo: float, hi: float, lo_open: bool, hi_open: bool) -> None:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok_lo = numeric and (value > lo if lo_open else value >= lo)
    ok_hi = numeric and (value < hi if hi_open else value <= hi)
    if not (ok_lo and ok_hi):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise fail(key, value, f"a number in {interval}")


def positive_int(key: str, value: int) -> None:
    if not (isinstance(value, int) and value >= 1):
        raise fail(key, value, "an integer >= 1")
