"""Data faults: each is one clear error naming the file or key, raised by the preflight (before
any training), with the data files left as they were.

Every row is (fault, how to make it in a fresh data dir, the overrides, the error class, the
one-line error it must give, the files that must be unchanged). The rows run through the real
preflight check in process (``check_job``: it loads and checks the data, as the job would); one
of them runs through the CLI too, as a user would see it."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import composed, fake_cifar, fake_image_folder, fake_mnist, run_in_process, write_idx

from prune_exp.app.preflight import check_job
from prune_exp.config import ConfigError
from prune_exp.errors import CorruptFileError, DataError

MNIST = ["data=mnist", "model=mlp", "data.download=false"]
CIFAR = ["data=cifar10", "model=mlp", "data.download=false", "data.verify=false"]
RAW = "MNIST/raw"
CIFAR_DIR = "cifar-10-batches-py"


def mnist_with(change: Callable[[Path], object], folder: str = "MNIST") -> Callable[[Path], None]:
    """Fake MNIST-format files in the data dir, then ``change(raw folder)``."""

    def make(root: Path) -> None:
        fake_mnist(root, folder)
        change(root / folder / "raw")

    return make


def cifar_with(name: str, data: bytes) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        fake_cifar(root)
        (root / CIFAR_DIR / name).write_bytes(data)

    return make


def cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


class RunsCode:
    """Unpickling this would run a shell command: what a malicious data file would do."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def cut_mnist1d(root: Path) -> None:
    """MNIST-1D generated in the data dir (a small one), then its file cut short."""
    from hydra.utils import instantiate

    with composed(["data=mnist1d", "data.num_samples=100"]) as cfg:
        dm = instantiate(cfg.data, data_dir=str(root))
    dm.prepare_data()
    cut(dm._cache_file(), 4000)


def empty_class_folder(root: Path) -> None:
    fake_image_folder(root, classes=3, per_class=2)
    for image in (root / "imagenet/train/n00000001").iterdir():
        image.unlink()


@dataclass(frozen=True)
class Fault:
    name: str
    make: Callable[[Path], None]
    overrides: list[str]
    error: type[Exception]
    message: str  # regex, searched in the one-line message
    unchanged: tuple[str, ...]  # globs under the data dir (and no file may appear anywhere)


FAULTS = [
    Fault(
        "truncated images",
        mnist_with(lambda raw: cut(raw / "train-images-idx3-ubyte", -100)),
        MNIST,
        DataError,
        rf"{RAW}/train-images-idx3-ubyte: 37548 bytes, but its header says 37648 \(truncated\?\); "
        r"allowed: MNIST's original files \(delete this one",
        (f"{RAW}/*",),
    ),
    Fault(
        "garbage images",
        mnist_with(lambda raw: (raw / "t10k-images-idx3-ubyte").write_bytes(b"<html>not found</html>" * 50)),
        MNIST,
        DataError,
        rf"{RAW}/t10k-images-idx3-ubyte: not an IDX file of 3-D uint8 \(it starts with 3c68746d, not 00000803\)",
        (f"{RAW}/*",),
    ),
    Fault(
        "empty labels file",
        mnist_with(lambda raw: (raw / "t10k-labels-idx1-ubyte").write_bytes(b"")),
        MNIST,
        DataError,
        rf"{RAW}/t10k-labels-idx1-ubyte: 0 bytes, too short for an IDX header \(8 bytes\)",
        (f"{RAW}/*",),
    ),
    Fault(
        "truncated header (Fashion-MNIST)",
        mnist_with(lambda raw: cut(raw / "train-labels-idx1-ubyte", 6), folder="FashionMNIST"),
        ["data=fashion_mnist", "model=mlp", "data.download=false"],
        DataError,
        r"FashionMNIST/raw/train-labels-idx1-ubyte: 6 bytes, too short for an IDX header \(8 bytes\); "
        r"allowed: FashionMNIST's original files",
        ("FashionMNIST/raw/*",),
    ),
    Fault(
        "images and labels of different counts",
        mnist_with(lambda raw: write_idx(raw / "train-labels-idx1-ubyte", np.arange(40) % 10)),
        MNIST,
        DataError,
        rf"{RAW}/train-labels-idx1-ubyte: 40 labels but train-images-idx3-ubyte has 48 images; allowed:",
        (f"{RAW}/*",),
    ),
    Fault(
        "a label outside num_classes",
        mnist_with(lambda raw: write_idx(raw / "train-labels-idx1-ubyte", np.r_[np.arange(47) % 10, 12])),
        MNIST,
        DataError,
        rf"{RAW}/train-labels-idx1-ubyte: label 12 \(example 47; 1 such\) is outside the 10 classes; "
        r"allowed: labels 0 to 9$",
        (f"{RAW}/*",),
    ),
    Fault(
        "files with no examples",
        lambda root: fake_mnist(root, "MNIST", n_test=0),
        MNIST,
        DataError,
        rf"{RAW}/t10k-labels-idx1-ubyte: no examples; allowed: at least one$",
        (f"{RAW}/*",),
    ),
    Fault(
        "num_samples leaving an empty val split (synthetic)",
        lambda root: None,
        ["data=synthetic", "model=mlp", "data.num_samples=5"],
        ConfigError,
        r"^data\.num_samples=5 leaves an empty split \(fit 4, val 0, test 1\); allowed: data\.num_samples >= 7$",
        (),  # and nothing generated
    ),
    Fault(
        "num_samples leaving no data at all (mnist1d)",
        lambda root: None,
        ["data=mnist1d", "model=mlp", "data.num_samples=5"],
        ConfigError,
        r"^data\.num_samples=5 leaves an empty split \(fit 0, val 0, test 0\); allowed: data\.num_samples >= 10$",
        (),  # and nothing generated
    ),
    Fault(
        "val_fraction leaving an empty val split (digits)",
        lambda root: None,
        ["data=digits", "model=mlp", "data.val_fraction=0.0001"],
        ConfigError,
        r"^data\.val_fraction=0\.0001 of 1438 examples leaves an empty split \(1438 and 0\); "
        r"allowed: data\.val_fraction between 0\.0006954 and 0\.9993$",
        (),  # and nothing generated
    ),
    Fault(
        "garbage CIFAR batch",
        cifar_with("data_batch_3", b"\x80\x04garbage"),
        CIFAR,
        DataError,
        rf"{CIFAR_DIR}/data_batch_3: not a CIFAR batch \(UnpicklingError: .*\); allowed: CIFAR10's original files",
        (f"{CIFAR_DIR}/*",),
    ),
    Fault(
        "empty CIFAR batch",
        cifar_with("test_batch", b""),
        CIFAR,
        DataError,
        rf"{CIFAR_DIR}/test_batch: not a CIFAR batch \(EOFError: Ran out of input\)",
        (f"{CIFAR_DIR}/*",),
    ),
    Fault(
        "CIFAR batch that is not CIFAR's (md5 checked)",
        cifar_with("data_batch_1", b"\x80\x04garbage"),
        ["data=cifar10", "model=mlp", "data.download=false"],
        DataError,
        rf"{CIFAR_DIR}/data_batch_1: its md5 is not the official file's .*data\.verify=false for files you made",
        (f"{CIFAR_DIR}/*",),
    ),
    Fault(
        "CIFAR batch that runs code when unpickled",
        cifar_with("test_batch", pickle.dumps({"data": RunsCode()})),
        CIFAR,
        DataError,
        rf"{CIFAR_DIR}/test_batch: not a CIFAR batch \(UnpicklingError: it refers to posix\.system, "
        r"which a CIFAR batch never does\)",
        (f"{CIFAR_DIR}/*",),
    ),
    Fault(
        "truncated MNIST-1D file",
        cut_mnist1d,
        ["data=mnist1d", "model=mlp", "data.num_samples=100"],
        CorruptFileError,
        r"^paths\.data_dir: .*/mnist1d/mnist1d-\w+\.npz is not the MNIST-1D file prune-exp generated \(truncated "
        r"or altered: .*\); delete it to generate it again$",
        ("mnist1d/*",),
    ),
    Fault(
        "image class folder without images",
        empty_class_folder,
        ["data=imagenet", "model=mlp", "data.num_classes=3", "data.image_size=16", "data.resize=18"],
        DataError,
        r"imagenet/train: no images in 1 of its class folders \(n00000001\); allowed: at least one image \(\.jpg .*\) "
        r"in every class folder$",
        ("imagenet/**/*",),
    ),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def matching(root: Path, globs: tuple[str, ...]) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for g in globs for p in sorted(root.glob(g)) if p.is_file()}


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_data_fault_is_one_clear_error_from_the_preflight(
    fault: Fault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    fault.make(data)
    monkeypatch.chdir(tmp_path)  # a file a planted pickle would create would land here
    before, files = matching(data, fault.unchanged), snapshot(data)
    with composed([*fault.overrides, f"paths.data_dir={data}"]) as cfg, pytest.raises(fault.error) as e:
        check_job(cfg)
    message = str(e.value)
    assert "\n" not in message and re.search(fault.message, message), message
    assert bool(before) == bool(fault.unchanged) and matching(data, fault.unchanged) == before
    assert snapshot(data) == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing else written (no "pwned")


def test_the_cli_refuses_a_truncated_data_file_before_any_job_dir_exists(tmp_path: Path) -> None:
    fault = FAULTS[0]
    fault.make(tmp_path / "data")
    before = snapshot(tmp_path)
    code, err = run_in_process(tmp_path, ["debug=fast", *fault.overrides, "hydra.run.dir=outputs/job"])
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prune-exp: error: ") and "Traceback" not in err
    assert re.search(fault.message, lines[0]), lines[0]
    assert snapshot(tmp_path) == before and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("data", ["digits", "mnist", "synthetic"])
def test_debug_fast_works_with_every_dataset(data: str, tmp_path: Path) -> None:
    """debug=fast sets nothing dataset-specific: it composes, passes the preflight and builds the data."""
    fake_mnist(tmp_path, "MNIST")
    with composed(["debug=fast", f"data={data}", f"paths.data_dir={tmp_path}"]) as cfg:
        assert len(check_job(cfg).digest) == 16


def test_a_sweep_loads_each_data_set_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preflight's memo: jobs that differ in anything but the data (or its dir) reuse its digest."""
    from prune_exp.data.synthetic import SyntheticDataModule

    loads: list[int] = []
    setup = SyntheticDataModule.setup
    monkeypatch.setattr(SyntheticDataModule, "setup", lambda self, stage=None: (loads.append(1), setup(self))[1])
    memo: dict = {}
    digests = []
    for job in (["seed=0"], ["seed=1", "prune.sparsity=0.5"], ["data.num_samples=600"], [f"paths.data_dir={tmp_path}"]):
        with composed(["data=synthetic", "model=mlp", *job]) as cfg:
            digests.append(check_job(cfg, memo).digest)
    assert len(loads) == 3  # the second job's data is the first one's
    assert digests[0] == digests[1] == digests[3] != digests[2]  # a data dir of its own, the same tensors
