"""How the report names, orders and colors a sweep's strategies, whatever they are called.

Each strategy's config may carry ``retrain.label`` (the figures' legend), ``retrain.short``
(the paired-differences columns) and ``retrain.color`` (any matplotlib color). Without them the
report uses the strategy's name and the next color of the palette that no strategy claimed.
Strategies are listed in the order the sweep ran them (the first job of each).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

PALETTE = tuple(
    f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink", "gray", "olive", "cyan")
)


@dataclass(frozen=True)
class StrategyStyles:
    names: tuple[str, ...]  # in the order the sweep ran them
    label: dict[str, str]
    short: dict[str, str]
    color: dict[str, str]

    @classmethod
    def of(cls, df: pd.DataFrame) -> StrategyStyles:
        """The styles of the strategies in ``df`` (records with the jobs' flattened configs)."""
        names = tuple(dict.fromkeys(df["strategy"].astype(str)))

        def given(key: str) -> dict[str, str]:
            col = f"retrain.{key}"
            if col not in df:
                return {}
            first = df[["strategy", col]].dropna().drop_duplicates("strategy")
            return {str(s): str(v) for s, v in zip(first["strategy"], first[col], strict=True)}

        label, short, color = given("label"), given("short"), given("color")
        free = iter([c for c in PALETTE if c not in set(color.values())] * len(names))
        return cls(
            names=names,
            label={n: label.get(n, n) for n in names},
            short={n: short.get(n, n) for n in names},
            color={n: color[n] if n in color else next(free) for n in names},
        )

    def ordered(self, strategies) -> list[str]:
        """``strategies`` in the sweep's order."""
        present = {str(s) for s in strategies}
        return [n for n in self.names if n in present]
