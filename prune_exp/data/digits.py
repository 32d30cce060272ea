"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): offline, no download."""

from __future__ import annotations

import numpy as np

from prune_exp.data.base import TensorDataModule, split_indices


class DigitsDataModule(TensorDataModule):
    """Pixels scaled to [0, 1] then standardized with the training statistics."""

    def __init__(self, *, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)

    @property
    def num_classes(self) -> int:
        return 10

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.data.astype(np.float32) / 16.0, d.target.astype(np.int64)
        # No official test split: carve one with a seed that differs from the val split's.
        train_idx, test_idx = split_indices(len(y), self.test_fraction, self.split_seed + 1, key="data.test_fraction")
        mean, std = x[train_idx].mean(), x[train_idx].std()
        x = (x - mean) / std
        return x[train_idx], y[train_idx], x[test_idx], y[test_idx]
