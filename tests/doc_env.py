"""What this machine lacks for the docs' commands, simulated or refused (tests/test_doc_commands.py's
docstring, "Markers"): the network (refused: ``go_offline``), training where a check must not train
(refused: ``refuse_training``), and what the ``needs gpu|cluster|download|file`` markers let a check
do without (``patch_needs``: fake downloads, ImageNet-style class folders, weights files)."""

from __future__ import annotations

from pathlib import Path

import pytest

NEEDS_DOWNLOAD = "<!-- docs-check: needs download -->"


def unmet(needs: set[str] | frozenset[str]) -> set[str]:
    """What of ``needs`` this machine lacks for a real run (the tests never submit or download)."""
    import torch

    return {n for n in needs if n in ("cluster", "download") or (n == "gpu" and not torch.cuda.is_available())}


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No check reaches the network: a name other than this machine's is not resolved."""
    import socket

    resolve, here = socket.getaddrinfo, {None, "", "localhost", "127.0.0.1", "::1", socket.gethostname()}

    def local_only(host, *args, **kwargs):
        if host in here:
            return resolve(host, *args, **kwargs)
        raise OSError(f"the docs check is offline (it resolves no {host}); a block that downloads: {NEEDS_DOWNLOAD}")

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


def refuse_training(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A job or a sweep's launch raises, for checks that must not train (Hydra turns the raise
    into exit status 1); the list it returns says whether one was refused."""
    import prune_exp.app.run as run
    import prune_exp.app.sweep_preflight as sweep_preflight

    refused: list[str] = []

    def refuse(*args, **kwargs):
        refused.append("a job or a sweep was about to train")
        raise RuntimeError("docs check: refused to train")

    monkeypatch.setattr(run, "run", refuse)
    monkeypatch.setattr(sweep_preflight, "run_batches", refuse)
    return refused


def patch_needs(needs: set[str] | frozenset[str], downloads: Path, monkeypatch: pytest.MonkeyPatch) -> set[Path]:
    """What the markers let the checks do without the thing (tests/test_doc_commands.py's
    docstring); the set that the weights files made for ``needs file`` are added to.
    ``downloads``: the data dir that the fake downloads are written to (each file in it is one)."""
    import torch

    import prune_exp.app.preflight as preflight
    from prune_exp.data.vision import TorchvisionDataModule

    made: set[Path] = set()

    def make(self, train: bool, download: bool):
        if download and "download" not in needs:
            raise RuntimeError(f"the docs check is offline; a command that downloads: {NEEDS_DOWNLOAD}")
        if download:
            fake_download(self.dataset, Path(self.data_dir))
            return None
        return original_make(self, train, download)

    original_make = TorchvisionDataModule._make
    monkeypatch.setattr(TorchvisionDataModule, "_make", make)
    if "download" in needs:
        fake_downloads_pass(downloads, monkeypatch)
    if "gpu" in needs and not torch.cuda.is_available():
        monkeypatch.setattr(preflight, "check_accelerator", lambda accelerator: None)
    if "file" in needs:
        write_missing_weights(made, monkeypatch)
    return made


def fake_downloads_pass(downloads: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``needs download``: a fake download under ``downloads`` passes torchvision's md5 check,
    and a missing ImageNet-style split gets one tiny image per class folder."""
    import torchvision.datasets.utils as tv_utils

    from prune_exp.data.imagefolder import ImageFolderDataModule

    original_integrity = tv_utils.check_integrity

    def integrity(path: str, md5: str | None = None) -> bool:  # a fake download is the official file
        return Path(path).resolve().is_relative_to(downloads.resolve()) or original_integrity(path, md5)

    monkeypatch.setattr(tv_utils, "check_integrity", integrity)
    original_available = ImageFolderDataModule.check_available

    def folders(self) -> None:
        for split in (self.train_dir, self.test_dir):
            if not (self.root / split).is_dir():
                fake_class_folders(self.root / split, self.num_classes)
        original_available(self)

    monkeypatch.setattr(ImageFolderDataModule, "check_available", folders)


def write_missing_weights(made: set[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """``needs file``: a weights file that does not exist is written when the preflight first
    reads it (the state dict of the job's network); each one written is added to ``made``."""
    import prune_exp.app.preflight as preflight

    original_fit = preflight.check_weights_fit

    def fit(net, path: Path, key: str = "dense.weights") -> None:
        if not path.exists():
            write_state_dict(net, path)
            made.add(path.resolve())
        original_fit(net, path, key)

    monkeypatch.setattr(preflight, "check_weights_fit", fit)


def fake_download(dataset: str, data_dir: Path) -> None:
    """The files of a torchvision data set, small, in its own format."""
    from helpers import fake_cifar, fake_mnist

    if dataset in ("MNIST", "FashionMNIST"):
        fake_mnist(data_dir, dataset)
    elif dataset in ("CIFAR10", "CIFAR100"):
        fake_cifar(data_dir, hundred=dataset == "CIFAR100")
    else:
        raise AssertionError(f"no fake download for torchvision's {dataset}: add one to fake_download")


def fake_class_folders(folder: Path, classes: int) -> None:
    """ImageNet's layout, one tiny image per class: <folder>/<class>/0.png."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    for c in range(classes):
        (folder / f"n{c:08d}").mkdir(parents=True, exist_ok=True)
        image.save(folder / f"n{c:08d}" / "0.png")


def write_state_dict(net, path: Path) -> None:
    """``net``'s state dict at ``path``: safetensors for .safetensors, else torch.save."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
