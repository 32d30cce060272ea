"""Files that hold no weights, given as dense.weights or found as a stage's resume.ckpt: each is
refused in one line that says what the file is (text, JSON, NumPy, a zip of other files, a
damaged safetensors or torch file, a pickle), never with torch's hint to load it unsafely."""

from __future__ import annotations

import json
import pickle
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from prune_exp.errors import CorruptFileError, DataError
from prune_exp.store.checkpoint import load_checkpoint, read_weights

ALLOWED = "allowed: safetensors, or a state dict saved with torch.save (tensors only)"
PICKLED = "it holds pickled objects besides tensors, which torch.load(weights_only=True) refuses"


class Thing:
    """An object torch.save pickles whole (a torch file, but not of tensors)."""

    def __init__(self) -> None:
        self.w = torch.zeros(2)


class Payload:
    """Unpickling it runs code: it creates PAYLOAD_RAN next to the file."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.where / 'PAYLOAD_RAN')!r}, 'w').close()",))


def zip_of_text(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hi")


def torch_file_cut_short(path: Path) -> None:
    torch.save({"w": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:100])


GARBAGE = repr(b"\x00garbage")
# (what makes the file, what the message says it is): none of them is read as weights
NOT_WEIGHTS: list[tuple[str, Callable[[Path], None], str]] = [
    ("text", lambda p: p.write_text("hello\n"), "text, starting 'hello'"),
    ("empty", lambda p: p.write_bytes(b""), "an empty file"),
    ("json", lambda p: p.write_text(json.dumps({"w": [1, 2]})), """text, starting '{"w": [1, 2]}'"""),
    ("zip", zip_of_text, "a zip archive that torch.save did not write, holding notes.txt"),
    ("npy", lambda p: np.save(p, np.zeros(3)), "a NumPy .npy array, which names no parameters"),
    ("pickle", lambda p: p.write_bytes(pickle.dumps({"w": [1.0]})), "a pickle that torch.save did not write"),
    ("torch cut short", torch_file_cut_short, "a zip archive cut short or damaged (as a truncated torch file is)"),
    (
        "safetensors header too long",
        lambda p: p.write_bytes(struct.pack("<Q", 10**9) + b'{"w": 1}'),
        "a safetensors file cut short or damaged: its header is 1000000000 bytes, the file 16",
    ),
    ("binary", lambda p: p.write_bytes(b"\x00garbage" * 20), "binary data of no known format, starting " + GARBAGE),
]


@pytest.mark.parametrize(("make", "what"), [(m, w) for _, m, w in NOT_WEIGHTS], ids=[n for n, _, _ in NOT_WEIGHTS])
def test_a_file_of_no_weights_is_named_for_what_it_is(tmp_path: Path, make: Callable[[Path], None], what: str) -> None:
    path = tmp_path / ("file.npy" if "npy" in what else "file")
    make(path)
    with pytest.raises(DataError) as e:
        read_weights(path)
    not_weights = "is not safetensors or a torch state dict"
    assert str(e.value) == f"dense.weights={str(path)!r} {not_weights}: it is {what}; {ALLOWED}"
    with pytest.raises(CorruptFileError) as c:
        load_checkpoint(path)
    assert str(c.value) == (
        f"cannot resume from {path}: it is not a checkpoint prune-exp wrote (truncated, or altered: {what}); "
        "delete it to run that stage from its start"
    )


def test_a_safetensors_file_with_a_bad_header_says_so(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 12) + b'{"w": nope!}')
    with pytest.raises(DataError) as e:
        read_weights(path, "dense.rewind_weights[0]")
    assert re.fullmatch(
        rf"dense\.rewind_weights\[0\]={re.escape(repr(str(path)))} cannot be read as weights \(a bad safetensors "
        rf"file: Error while deserializing header: invalid JSON in header: .*\); {re.escape(ALLOWED)}",
        str(e.value),
    ), e.value


@pytest.mark.parametrize("payload", ["torch.save", "pickle"])
def test_a_pickled_object_is_refused_unrun_and_without_the_unsafe_hint(tmp_path: Path, payload: str) -> None:
    path = tmp_path / "obj.pt"
    if payload == "torch.save":
        torch.save({"w": Thing(), "run": Payload(tmp_path)}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(tmp_path)))
    messages = []
    for read, error in ((read_weights, DataError), (load_checkpoint, CorruptFileError)):
        with pytest.raises(error) as e:
            read(path)
        messages.append(str(e.value))
    what = PICKLED if payload == "torch.save" else "a pickle that torch.save did not write"
    assert messages == [
        (
            f"dense.weights={str(path)!r} cannot be read as weights ({what}); {ALLOWED}"
            if payload == "torch.save"
            else f"dense.weights={str(path)!r} is not safetensors or a torch state dict: it is {what}; {ALLOWED}"
        ),
        f"cannot resume from {path}: it is not a checkpoint prune-exp wrote (truncated, or altered: {what}); "
        "delete it to run that stage from its start",
    ]
    assert not any(re.search(r"weights_only`?\s*(=|set to)\s*`?False", m) for m in messages)
    assert not (tmp_path / "PAYLOAD_RAN").exists()


def test_weights_in_either_format_still_load(tmp_path: Path) -> None:
    state = {"w": torch.arange(4.0), "b": torch.ones(2)}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("w.safetensors", "w.pt", "legacy.pt"):
        got = read_weights(tmp_path / name)
        assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state), name
