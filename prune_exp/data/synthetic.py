"""Gaussian class clusters of any shape: instant, offline data for tests and smoke runs."""

from __future__ import annotations

import numpy as np

from prune_exp.data.base import TensorDataModule, split_indices


class SyntheticDataModule(TensorDataModule):
    """Class k is a fixed random prototype plus Gaussian noise of scale ``noise``."""

    def __init__(
        self,
        *,
        num_samples: int = 2000,
        num_classes: int = 10,
        shape: list[int] | tuple[int, ...] = (1, 40),
        noise: float = 1.0,
        test_fraction: float = 0.2,
        data_seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_samples = num_samples
        self._num_classes = num_classes
        self.shape = tuple(int(s) for s in shape)
        self.noise = noise
        self.test_fraction = test_fraction
        self.data_seed = data_seed

    size_key = "data.num_samples"

    def planned_sizes(self, n: int) -> tuple[int, int]:
        test = round(n * self.test_fraction)
        return n - test, test

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.data_seed)
        dim = int(np.prod(self.shape))
        prototypes = rng.standard_normal((self._num_classes, dim)).astype(np.float32)
        y = rng.integers(0, self._num_classes, self.num_samples)
        x = prototypes[y] + self.noise * rng.standard_normal((self.num_samples, dim)).astype(np.float32)
        train_idx, test_idx = split_indices(
            self.num_samples, self.test_fraction, self.split_seed + 1, key="data.test_fraction"
        )
        return x[train_idx], y[train_idx], x[test_idx], y[test_idx]
