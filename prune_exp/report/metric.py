"""The metric a report is about: its direction and scale, read from the records' ``metrics``
column (each job's task.Task.describe), and how its values are written.

Records from before that column were all of the built-in classification task: there, the loss
is lower-is-better and every other metric is a fraction shown in percent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prune_exp.config.task import LOSS
from prune_exp.errors import ConfigError
from prune_exp.store.columns import metric_key


@dataclass(frozen=True)
class ReportMetric:
    name: str
    higher_is_better: bool = True
    percent: bool = True  # a fraction in [0, 1], written in percent

    @classmethod
    def of(cls, df: pd.DataFrame, name: str) -> ReportMetric:
        """``name`` as the records describe it; ConfigError when the sweep's jobs disagree or
        no record has ``test_<name>``."""
        if metric_key("test", name) not in df:
            have = sorted(c.removeprefix("test_") for c in df.columns if c.startswith("test_"))
            raise ConfigError(f"--metric {name!r}: the records have no test_{name}; allowed: {', '.join(have)}")
        builtin = cls(name, name != LOSS, name != LOSS)  # records from before the metrics column
        if "metrics" not in df:
            return builtin
        kinds = {
            (bool(d[name]["higher_is_better"]), bool(d[name]["percent"]))
            for d in df["metrics"].dropna()
            if isinstance(d, dict) and name in d
        }
        if len(kinds) > 1:
            raise ConfigError(f"--metric {name!r}: the sweep's jobs give it different directions or scales: {kinds}")
        return cls(name, *kinds.pop()) if kinds else builtin

    @property
    def unit(self) -> str:
        """What a value is in, for headers: ' (%)' or ''."""
        return " (%)" if self.percent else ""

    @property
    def after_value(self) -> str:
        """What follows a value in prose: ' %' or ''."""
        return " %" if self.percent else ""

    @property
    def diff_unit(self) -> str:
        return "percentage points" if self.percent else f"in units of {self.name}"

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def axis_label(self, split: str = "test") -> str:
        return f"{split} {self.name}{self.unit}" + ("" if self.higher_is_better else " (lower is better)")

    @property
    def scale(self) -> float:
        """Values are multiplied by this for the figures."""
        return 100.0 if self.percent else 1.0

    def value(self, x: float) -> str:
        if x is None or np.isnan(x):
            return "–"
        return f"{100 * x:.2f}" if self.percent else f"{x:.4g}"

    def signed(self, x: float) -> str:
        if x is None or np.isnan(x):
            return "–"
        return f"{100 * x:+.2f}" if self.percent else f"{x:+.4g}"

    def mean_std_n(self, mean: float, std: float, n: int) -> str:
        """'94.17 ± 0.35 (3)'; a single value has no spread: '94.17 (1)'."""
        return f"{self.value(mean)} ({n})" if n < 2 else f"{self.value(mean)} ± {self.value(std)} ({n})"

    def diff_ci_wins(self, mean: float, lo: float, hi: float, a_wins: int, b_wins: int, ties: int) -> str:
        """'+0.53 [-0.10, +1.20] (2–1)': the mean difference A − B, its bootstrap interval (left
        out for one seed), seeds where A was better–B was better (', =k' for k ties)."""
        ci = "" if np.isnan(lo) else f" [{self.signed(lo)}, {self.signed(hi)}]"
        return f"{self.signed(mean)}{ci} ({a_wins}–{b_wins}{f', ={ties}' if ties else ''})"
