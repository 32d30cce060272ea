"""scikit-learn's bundled diabetes set (442 patients, 10 features, one target: disease
progression after a year): offline regression, no download."""

from __future__ import annotations

import numpy as np

from prune_exp.data.base import TensorDataModule, split_indices


class DiabetesDataModule(TensorDataModule):
    """Features and target standardized with the training statistics, so the MSE is in units
    of the target's variance (an MSE of 1 is predicting the mean; R² = 1 - MSE, roughly)."""

    task = "regression"

    def __init__(self, *, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (10,)

    @property
    def num_classes(self) -> int:
        return 1  # one target value per example

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from sklearn.datasets import load_diabetes

        d = load_diabetes(scaled=False)
        x, y = d.data.astype(np.float32), d.target.astype(np.float32)
        # No official test split: carve one with a seed that differs from the val split's.
        train_idx, test_idx = split_indices(len(y), self.test_fraction, self.split_seed + 1, key="data.test_fraction")
        x = (x - x[train_idx].mean(0)) / x[train_idx].std(0)
        y = (y - y[train_idx].mean()) / y[train_idx].std()
        return x[train_idx], y[train_idx], x[test_idx], y[test_idx]
