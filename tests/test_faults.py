"""The fault suite: bad input, bad files and busy dirs, each as a row of (fault, the one-line
error it must give, what must stay unchanged). Every row runs the real command in process
(``prune_exp.run``'s exit path, as ``prune-exp`` runs it) in a root that already holds earlier
results, and checks that the command exits non-zero with one line naming the key or file, no
traceback, and every file of the root byte for byte as it was (nothing new written either).

Faults that need a real process (signals, a second writer, a full disk, a dying parent) are
in test_lifecycle.py; data faults in test_data_faults.py; report faults in test_report*.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from helpers import finished_root, run_in_process, snapshot

pytestmark = pytest.mark.slow

SMALL = ["debug=fast", "dense.epochs=2", "retrain.budget=1"]


@dataclass(frozen=True)
class Fault:
    name: str
    args: list[str]
    error: str  # a regex the last stderr line must match
    setup: Callable[[Path], None] | None = None  # prepares the root (besides the earlier results)
    hydra_message: bool = False  # Hydra's own composition error (several lines, no traceback)
    skip_if: Callable[[], bool] = field(default=lambda: False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with one finished job (outputs/one) and its dense run in the cache."""
    return finished_root(tmp_path_factory.mktemp("finished"), SMALL)


def other_config_job(root: Path) -> None:
    job = root / "outputs" / "taken"
    job.mkdir(parents=True)
    (job / "status.json").write_text(json.dumps({"state": "done", "fingerprint": "0123", "overrides": ["seed=7"]}))


def damaged_checkpoint(root: Path) -> None:
    """A killed job's dir (this config's) whose resume.ckpt was cut short, with its logs."""
    import shutil

    job = root / "outputs" / "killed"
    shutil.copytree(root / "outputs" / "one", job)
    status = json.loads((job / "status.json").read_text())
    (job / "status.json").write_text(json.dumps({**status, "state": "running"}))
    (job / "resume.ckpt").write_bytes(b"PK\x03\x04 cut short")


def two_data_dirs(root: Path) -> None:
    """MNIST's files in mnist_a; mnist_b is empty."""
    from helpers import fake_mnist

    fake_mnist(root / "mnist_a", "MNIST")
    (root / "mnist_b").mkdir()


def has_gpu() -> bool:
    return torch.cuda.is_available()


FAULTS = [
    Fault("a + typo in a nested key", ["+prune.sparsty=0.9"], r"prune\.sparsty is not a config key.*prune\.sparsity"),
    Fault("a + typo in another group", ["+retrain.budgt=5"], r"retrain\.budgt is not a config key.*retrain\.budget"),
    Fault("a + key at the top", ["+foo=1"], r"foo is not a config key; allowed: one of data, model"),
    Fault("a typo without +", ["prune.sparsty=0.5"], r"Key 'sparsty' not in 'PruneConfig'", hydra_message=True),
    Fault("an unknown option", ["retrain=finetuning"], r"Could not find 'retrain/finetuning'", hydra_message=True),
    Fault("an empty run dir", ["hydra.run.dir="], r"hydra\.run\.dir='' is not allowed"),
    Fault("an empty sweep dir", ["-m", "seed=0,1", "hydra.sweep.dir="], r"hydra\.sweep\.dir='' is not allowed"),
    Fault("a name that leaves outputs/", ["name=../../elsewhere"], r"name='\.\./\.\./elsewhere' is not allowed"),
    Fault("an absolute name", ["name=/tmp/x"], r"name='/tmp/x' is not allowed"),
    Fault("an override without a key", ["=5"], r"the override '=5' has no key"),
    Fault("n:m with an iterative schedule", ["structure=nm"], r"prune\.schedule='iterative' is not allowed"),
    Fault(
        "n:m with m = 0",
        ["structure=nm", "structure.m=0", "prune.schedule=one_shot"],
        r"structure\.m=0 is not allowed; allowed: an integer >= 2",
    ),
    Fault("n:m at the wrong sparsity", ["structure=nm", "prune.schedule=one_shot"], r"prune\.sparsity=0\.9 .*0\.5"),
    Fault("a GPU job without a GPU", ["trainer=gpu"], r"trainer\.accelerator='gpu' is not allowed", skip_if=has_gpu),
    Fault("a sparsity out of range", ["prune.sparsity=1.5"], r"prune\.sparsity=1\.5 is not allowed"),
    Fault(
        "a rewinding budget over T",
        ["-m", "retrain=finetune,weight_rewind", "retrain.budget=99"],
        r"in the sweep job \[retrain=weight_rewind.*retrain\.budget=99 is not allowed; allowed: 1\.\.60",
    ),
    Fault(
        "a sweep whose second data dir is empty",
        ["-m", *SMALL, "data=mnist", "data.download=false", "paths.data_dir=mnist_a,mnist_b"],
        r"in the sweep job \[.* paths\.data_dir=mnist_b .*\]: paths\.data_dir: MNIST is not in mnist_b/MNIST/raw",
        setup=two_data_dirs,
    ),
    Fault(
        "a job dir of another config",
        [*SMALL, "hydra.run.dir=outputs/taken"],
        r"outputs/taken already holds a job of another config",
        setup=other_config_job,
    ),
    Fault(
        "a resume checkpoint cut short",
        [*SMALL, "hydra.run.dir=outputs/killed"],
        r"cannot resume from .*killed/resume\.ckpt: it is not a checkpoint prune-exp wrote",
        setup=damaged_checkpoint,
    ),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_fault_gives_one_clear_line_and_changes_nothing(fault: Fault, finished: Path, tmp_path: Path) -> None:
    if fault.skip_if():
        pytest.skip("this machine has what the fault takes away")
    import shutil

    root = tmp_path / "root"
    shutil.copytree(finished, root)
    if fault.setup is not None:
        fault.setup(root)
    before = snapshot(root)
    code, err = run_in_process(root, fault.args)
    assert code == 1, err[-2000:]
    last = err if fault.hydra_message else err.strip().splitlines()[-1]
    assert fault.hydra_message or last.startswith("prune-exp: "), err[-2000:]
    assert re.search(fault.error, last), last
    assert "Traceback" not in err, err[-3000:]
    after = snapshot(root)
    assert {k: after.get(k) for k in before} == before  # every earlier file as it was
    assert [k for k in after.keys() - before.keys() if not k.startswith("data/")] == []  # (generated data aside)


def test_keys_of_a_free_dict_are_the_users_not_typos() -> None:
    """prune.layer_rate_scale maps the user's patterns: any key may be added to it."""
    from helpers import composed

    from prune_exp.config import check_known_keys

    with composed(["+prune.layer_rate_scale.classifier=0.5"], hydra=True) as cfg:
        check_known_keys(cfg)
        assert cfg.prune.layer_rate_scale.classifier == 0.5


def test_the_readme_names_every_column_that_differs_between_reruns() -> None:
    from helpers import REPO

    from prune_exp.records import VOLATILE

    readme = (REPO / "README.md").read_text()
    start = readme.index("Only these columns differ between two runs of one")
    paragraph = readme[start : readme.index("\n\n", start)]
    assert [c for c in VOLATILE if f"`{c}`" not in paragraph] == []


def test_two_commands_started_in_the_same_second_get_different_dirs(tmp_path: Path) -> None:
    """The default run and sweep dirs end in the process id: two processes, two dirs."""
    code = (
        "import os\n"
        "from hydra import compose, initialize_config_dir\n"
        "from prune_exp.run import conf_dir\n"  # (no torch: composing is all this needs)
        "with initialize_config_dir(config_dir=conf_dir(), version_base='1.3'):\n"
        "    cfg = compose('run', return_hydra_config=True)\n"
        "    print(os.getpid(), cfg.hydra.run.dir, cfg.hydra.sweep.dir)\n"
    )
    env = {**os.environ, "PRUNE_EXP_ROOT": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    for pid, run_dir, sweep_dir in outs:
        assert re.fullmatch(rf".*/outputs/default/runs/\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_{pid}", run_dir), run_dir
        assert re.fullmatch(rf".*/outputs/default/multiruns/\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_{pid}", sweep_dir)
    assert outs[0][1] != outs[1][1] and outs[0][2] != outs[1][2]
