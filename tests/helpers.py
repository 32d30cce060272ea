"""Test helpers: compose the real config, run the CLI, build a tiny real job from typed objects."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from prune_exp.app.run import _exit_status, conf_dir
from prune_exp.config import MultiStepScheduleConfig, SGDConfig, TrainerConfig
from prune_exp.data.synthetic import SyntheticDataModule
from prune_exp.job.dense import dense_stage
from prune_exp.lit.trainer import Job
from prune_exp.models.mlp import MLP
from prune_exp.retrain.schedules import LRSchedule
from prune_exp.store.dense_cache import DenseCache, DenseRun, dense_spec

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def composed(overrides: Sequence[str] = (), *, hydra: bool = False) -> Iterator[DictConfig]:
    """The real config from conf/, composed with ``overrides`` (as the CLI would)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        yield compose("run", overrides=list(overrides), return_hydra_config=hydra)


def job_config(tmp_path: Path, data_dir: Path, overrides: Sequence[str] = (), job: str = "job") -> DictConfig:
    """A job's config writing into ``tmp_path / job``, with HydraConfig set as in a real run."""
    with composed(
        [*overrides, f"paths.root_dir={tmp_path}", f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path / job}"],
        hydra=True,
    ) as cfg:
        HydraConfig.instance().set_config(cfg)
        return cfg


def run_cli(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600, umask: int | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m prune_exp ARGS`` in a subprocess, as a user would (with ``umask``, if given)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNE_EXP_ROOT": str(cwd), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "prune_exp", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=None if umask is None else lambda: os.umask(umask),
    )


def run_in_process(root: Path, args: Sequence[str]) -> tuple[int, str]:
    """``prune-exp ARGS`` in this process, in ``root`` (``paths.root_dir``): (exit status, stderr).
    The exit path of the real command (run._exit_status) without a new process's ~7 s of imports."""
    err = io.StringIO()
    argv, cwd = sys.argv, os.getcwd()
    sys.argv = ["prune-exp", *args, f"paths.root_dir={root}"]
    os.chdir(root)
    try:
        with contextlib.redirect_stderr(err):
            code = _exit_status()
    finally:
        sys.argv = argv
        os.chdir(cwd)
    if isinstance(code, str):
        print(code, file=err)
        code = 1
    return int(code or 0), err.getvalue()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes: to check that nothing was changed."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def finished_root(root: Path, args: Sequence[str]) -> Path:
    """``root`` with one finished job of ``args`` in outputs/one (and its dense run in the cache)."""
    res = run_cli([*args, "hydra.run.dir=outputs/one"], cwd=root)
    assert res.returncode == 0, res.stderr[-2000:]
    return root


# A job long enough to kill or preempt in its dense stage and again while it retrains: ~0.8 s
# per epoch on this machine (600 steps of batch 8), so a kill 0.25 s after an epoch's checkpoint
# lands inside the next epoch. tests/test_resume.py, tests/test_lifecycle.py, tests/test_slurm.py.
RESUMABLE_JOB = [
    "data=synthetic",
    "data.num_samples=6000",
    "data.batch_size=8",
    "model=mlp",
    "optim.lr=0.01",
    "dense.epochs=4",
    "optim.schedule.milestones=[2,3]",
    "retrain=weight_rewind",
    "retrain.budget=2",
    "prune.sparsity=0.5",
    "prune.rate=0.3",
    "trainer.checkpoint_every_s=0",  # a checkpoint at every epoch end, so the tests can kill after one
]


# --------------------------------------------------------------------- a tiny job, no Hydra
IN_SHAPE, CLASSES = (1, 12), 4


def tiny_net() -> torch.nn.Module:
    return MLP(IN_SHAPE, CLASSES, hidden=[16, 16], batch_norm=True)


def tiny_job(
    *,
    T: int = 4,
    milestones: Sequence[float] = (2, 3),
    lr: float = 0.1,
    callbacks=(),
    seed: int = 0,
    batch_size: int = 32,
) -> Job:
    """A real job: synthetic data, an MLP with BatchNorm, SGD with momentum and weight decay."""
    dm = SyntheticDataModule(
        batch_size=batch_size,
        eval_batch_size=256,
        val_fraction=0.2,
        split_seed=0,
        num_samples=320,
        num_classes=CLASSES,
        shape=IN_SHAPE,
        noise=1.0,
        data_seed=0,
        shuffle_seed=seed,
    )
    dm.setup()
    optim = SGDConfig(
        lr=lr, momentum=0.9, weight_decay=5e-4, schedule=MultiStepScheduleConfig(milestones=list(milestones), gamma=0.1)
    )
    return Job(
        datamodule=dm,
        build_net=tiny_net,
        optim=optim,
        schedule=LRSchedule(lr, T, optim.schedule),
        trainer=TrainerConfig(),
        seed=seed,
        progress_bar=False,
        callbacks=list(callbacks),
    )


def tiny_dense(job: Job, cache_root: Path) -> DenseRun:
    T = job.schedule.total_epochs
    spec = dense_spec(
        data={"tiny": True},
        model={"mlp": [16, 16]},
        optim={"lr": job.optim.lr},
        epochs=T,
        seed=job.seed,
        precision="32-true",
    )
    run, _ = dense_stage(job, DenseCache(cache_root), spec, set(range(T + 1)), set())
    return run


# ------------------------------------------------------------- torchvision files, offline
def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format MNIST ships in: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian sizes, bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, folder: str, n_train: int = 48, n_test: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
    }
    for name, a in arrays.items():
        write_idx(root / folder / "raw" / name, a)
    return arrays


def fake_cifar(root: Path, hundred: bool = False, per_file: int = 10) -> dict[str, np.ndarray]:
    """CIFAR's own format: pickled dicts of uint8 rows (3072 = 3 x 32 x 32, channel-major)."""
    import pickle

    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR100 if hundred else CIFAR10
    label_key = "fine_labels" if hundred else "labels"
    rng = np.random.default_rng(1)
    folder = root / cls.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for split, files in (("train", cls.train_list), ("test", cls.test_list)):
        for name, _md5 in files:
            data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 100 if hundred else 10, per_file)]
            with open(folder / name, "wb") as f:
                pickle.dump({"data": data, label_key: labels}, f)
            out[f"{split}_x"].append(data.reshape(-1, 3, 32, 32))
            out[f"{split}_y"] += labels
    with open(folder / cls.meta["filename"], "wb") as f:
        pickle.dump({cls.meta["key"]: [f"class{i}" for i in range(100 if hundred else 10)]}, f)
    return {k: np.concatenate(v) if k.endswith("_x") else np.asarray(v) for k, v in out.items()}


def fake_image_folder(root: Path, classes: int = 3, per_class: int = 4, size: int = 40) -> None:
    """ImageNet's layout: <root>/imagenet/{train,val}/<class>/<image>.png."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@contextmanager
def tiny_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path``, for full-disk tests (needs root and mount: the
    test is skipped without them); unmounted after, lazily (a log file of an in-process run
    may still be open on it)."""
    import pytest

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
