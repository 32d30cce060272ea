"""MNIST-1D (Greydanus & Kobak): generated locally from the package's templates, no download."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from prune_exp.data.base import TensorDataModule
from prune_exp.errors import CorruptFileError
from prune_exp.store.atomic import atomic_write


class MNIST1DDataModule(TensorDataModule):
    """40-sample 1-D signals, 10 classes; ``data_seed=42`` reproduces the published set."""

    def __init__(
        self,
        *,
        num_samples: int = 5000,
        train_split: float = 0.8,
        final_seq_length: int = 40,
        data_seed: int = 42,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_samples = num_samples
        self.train_split = train_split
        self.final_seq_length = final_seq_length
        self.data_seed = data_seed

    size_key = "data.num_samples"

    def planned_sizes(self, n: int) -> tuple[int, int]:
        """As mnist1d's make_dataset: ``n // 10`` signals per class, the first ``train_split`` for training."""
        total = n // 10 * 10
        train = int(total * self.train_split)
        return train, total - train

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.final_seq_length)

    @property
    def num_classes(self) -> int:
        return 10

    def _args(self) -> dict:
        from mnist1d.data import get_dataset_args

        args = get_dataset_args(as_dict=True)
        args.update(
            num_samples=self.num_samples,
            train_split=self.train_split,
            final_seq_length=self.final_seq_length,
            seed=self.data_seed,
        )
        args.pop("url")
        return args

    def _cache_file(self) -> Path:
        key = hashlib.sha256(json.dumps(self._args(), sort_keys=True).encode()).hexdigest()[:12]
        return Path(self.data_dir) / "mnist1d" / f"mnist1d-{key}.npz"

    def prepare_data(self) -> None:
        """Generate once (a few seconds) and keep the arrays; later runs just load them."""
        path = self._cache_file()
        if path.exists():
            return
        from mnist1d.data import make_dataset
        from mnist1d.utils import ObjectView

        d = make_dataset(ObjectView(self._args()))
        with atomic_write(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self.prepare_data()
        path = self._cache_file()
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["x"], z["y"], z["x_test"], z["y_test"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
            reason = " ".join(str(e).split())[:120] or type(e).__name__
            raise CorruptFileError(
                f"paths.data_dir: {path} is not the MNIST-1D file prune-exp generated (truncated or altered: "
                f"{reason}); delete it to generate it again"
            ) from None
