"""The fault suite: bad input, bad files and busy dirs, each as a row of (fault, the one-line
error it must give, what must stay unchanged). Every row runs the real command in process
(``prune_exp.app.run``'s exit path, as ``prune-exp`` runs it) in a root that already holds earlier
results, and checks that the command exits non-zero with one line naming the key or file, no
traceback, and every file of the root byte for byte as it was (nothing new written either).

Faults that need a real process (signals, a second writer, a full disk, a dying parent) are
in test_lifecycle.py; data faults in test_data_faults.py; report faults in test_report*.py.
Command-line cases that must not be faults are in test_faults_command_line.py.
"""

from __future__ import annotations

import json
import pickle
import re
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


class NotWeights:
    """An object torch.save pickles whole: loading it would import and build this class."""

    def __init__(self) -> None:
        self.w = torch.zeros(2)


class Payload:
    """A pickle payload: unpickling it runs code (here, it creates PAYLOAD_RAN in the cwd)."""

    def __reduce__(self) -> tuple:
        return (exec, ("open('PAYLOAD_RAN', 'w').close()",))


def text_weights(root: Path) -> None:
    (root / "weights.txt").write_text("hello\n")


def pickled_weights(root: Path) -> None:
    torch.save(NotWeights(), root / "obj.pt")


def killed_job(root: Path, checkpoint: Callable[[Path], None]) -> None:
    """A killed job's dir (this config's) whose resume.ckpt is what ``checkpoint`` writes."""
    damaged_checkpoint(root)
    checkpoint(root / "outputs" / "killed" / "resume.ckpt")


def user_criterion(root: Path) -> None:
    """A user's own prune/criterion option, in their config dir, with a typo in its target."""
    (root / "my_conf" / "prune" / "criterion").mkdir(parents=True)
    (root / "my_conf" / "prune" / "criterion" / "mine.yaml").write_text(
        "_target_: prune_exp.pruning.criteria.Magnitud\n"
    )


# torch's hint to load a refused file unsafely, in any of its wordings: no message relays it
UNSAFE_HINT = r"weights_only`?\s*(=|set to)\s*`?False"


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
        "gradual pruning with prune.every over the ramp",
        [*SMALL, "prune.schedule=gradual"],
        r"prune\.every=100 is not allowed with prune\.schedule=gradual: its cubic ramp is 18 steps \(the first 3 of "
        r"4 rounds of 6 steps: prune\.rate=0\.2 takes 4 rounds to prune\.sparsity=0\.5, each of retrain\.budget=1 "
        r"epochs of 6 steps\), .*; allowed: an integer in \[1, 9\]",
    ),
    Fault(
        "gradual pruning with prune.every equal to the ramp",
        [*SMALL, "prune.schedule=gradual", "prune.every=18"],
        r"prune\.every=18 is not allowed .* ramp is 18 steps .*; allowed: an integer in \[1, 9\]",
    ),
    Fault(
        "dense.weights a text file",
        [*SMALL, "dense.weights=weights.txt"],
        r"dense\.weights='weights\.txt' is not safetensors or a torch state dict: it is text, starting 'hello'; "
        r"allowed: safetensors, or a state dict saved with torch\.save \(tensors only\)$",
        setup=text_weights,
    ),
    Fault(
        "dense.weights a pickled object",
        [*SMALL, "dense.weights=obj.pt"],
        r"dense\.weights='obj\.pt' cannot be read as weights \(it holds pickled objects besides tensors, which "
        r"torch\.load\(weights_only=True\) refuses\); allowed: safetensors, or a state dict",
        setup=pickled_weights,
    ),
    Fault(
        "a resume checkpoint that pickles an object",
        [*SMALL, "hydra.run.dir=outputs/killed"],
        r"cannot resume from .*killed/resume\.ckpt: it is not a checkpoint prune-exp wrote \(truncated, or altered: "
        r"it holds pickled objects besides tensors, which torch\.load\(weights_only=True\) refuses\); delete it",
        setup=lambda root: killed_job(root, lambda path: torch.save(NotWeights(), path)),
    ),
    Fault(
        "a resume checkpoint replaced by a pickle payload",
        [*SMALL, "hydra.run.dir=outputs/killed"],
        r"cannot resume from .*killed/resume\.ckpt: it is not a checkpoint prune-exp wrote \(truncated, or altered: "
        r"a pickle that torch\.save did not write\); delete it",
        setup=lambda root: killed_job(root, lambda path: path.write_bytes(pickle.dumps(Payload()))),
    ),
    Fault(
        "a typo in the criterion's target",
        ["prune.criterion._target_=prune_exp.pruning.criteria.Magnitud"],
        r"prune\.criterion\._target_='prune_exp\.pruning\.criteria\.Magnitud' cannot be imported \("
        r"prune_exp\.pruning\.criteria has no 'Magnitud'; did you mean prune_exp\.pruning\.criteria\.Magnitude\?\); "
        r"allowed: one of prune_exp\.pruning\.criteria\.Magnitude, .*, or the import path of a class of your own$",
    ),
    Fault(
        "a typo in a user's criterion file",
        ["--config-dir", "my_conf", "prune/criterion=mine"],
        r"prune\.criterion\._target_='prune_exp\.pruning\.criteria\.Magnitud' cannot be imported",
        setup=user_criterion,
    ),
    Fault(
        "a typo in the model's target",
        ["model._target_=prune_exp.models.mlp.MLPx"],
        r"model\._target_='prune_exp\.models\.mlp\.MLPx' cannot be imported \(prune_exp\.models\.mlp has no 'MLPx'; "
        r"did you mean prune_exp\.models\.mlp\.MLP\?\); allowed: one of prune_exp\.models\.mlp\.MLP, ",
    ),
    Fault(
        "a model module that is not there",
        ["model._target_=my_models.Net"],
        r"model\._target_='my_models\.Net' cannot be imported \(no module named 'my_models'; a module of your own "
        r"must be on PYTHONPATH\); allowed: one of prune_exp\.models\.mlp\.MLP, ",
    ),
    Fault(
        "a typo in the data's target",
        ["data._target_=prune_exp.data.synthetc.SyntheticDataModule"],
        r"data\._target_='prune_exp\.data\.synthetc\.SyntheticDataModule' cannot be imported \(prune_exp\.data has "
        r"no 'synthetc'; did you mean prune_exp\.data\.synthetic\.SyntheticDataModule\?\)",
    ),
    Fault(
        "a typo in the structure's target",
        ["structure._target_=prune_exp.pruning.structure.Chanel"],
        r"structure\._target_='prune_exp\.pruning\.structure\.Chanel' cannot be imported .*allowed: one of "
        r"prune_exp\.pruning\.structure\.Unstructured, prune_exp\.pruning\.structure\.Channel, ",
    ),
    Fault(
        "a typo in a metric's target",
        ["+task.metrics.kappa={_target_:torchmetrics.classification.MulticlassCohenKapa}"],
        r"task\.metrics\.kappa\._target_='torchmetrics\.classification\.MulticlassCohenKapa' cannot be imported "
        r"\(torchmetrics\.classification has no 'MulticlassCohenKapa'\); allowed: one of ",
    ),
    Fault(
        "a typo in the logger's target",
        ["logger=tensorboard", "logger._target_=lightning.pytorch.loggers.TensorBoardLoger"],
        r"logger\._target_='lightning\.pytorch\.loggers\.TensorBoardLoger' cannot be imported .*; allowed: ",
    ),
    Fault(
        "prune.rounds and prune.sparsity both on the command line",
        ["prune.rounds=2", "prune.sparsity=0.95"],
        r"config error: prune\.rounds=2 and prune\.sparsity=0\.95 both set the target sparsity .*allowed: one of them",
    ),
    Fault(
        "prune.rounds and prune.sparsity both on the command line of a sweep",
        ["-m", "prune.rounds=2,3", "prune.sparsity=0.95"],
        r"config error in the sweep job \[prune\.rounds=2 prune\.sparsity=0\.95 [^]]*\]: prune\.rounds=2 and "
        r"prune\.sparsity=0\.95 both set",
    ),
    Fault(
        "prune.rounds and prune.sparsity both in one dict override",
        ["prune.schedule=iterative", "prune={rounds:2,sparsity:0.9}"],
        r"config error: prune\.rounds=2 and prune\.sparsity=0\.9 both set the target sparsity",
    ),
    Fault(
        "a sweep value given twice",
        ["-m", "seed=0,0", "retrain=finetune,lr_rewind"],
        r"config error: the sweep has the job \[seed=0 retrain=finetune [^]]*\] twice \(#0 and #2\): a value given "
        r"twice would count one seed as two in the report; allowed: each value of a swept key once",
    ),
    Fault(
        "a sweep of no job",
        ["-m", "seed=range(0,0)"],
        r"config error: the sweep has no job \(a range\(\) that is empty, a glob\(\) that matches no option\?\)",
    ),
    Fault(
        "two jobs of a sweep in one dir",
        ["-m", "seed=0,1", "hydra.sweep.subdir=same"],
        r"config error: hydra\.sweep\.subdir=same gives the jobs #0 \[seed=0 .*\] and #1 \[seed=1 .*\] one dir, "
        r".*/same; allowed: a dir of its own for every job",
    ),
    Fault(
        "a sweeper batch of no job",
        ["-m", "seed=0,1", "hydra.sweeper.max_batch_size=0"],
        r"config error: hydra\.sweeper\.max_batch_size=0 is not allowed; allowed: null \(every job at once\) or an "
        r"integer >= 1",
    ),
    Fault(
        "no worker for the local launcher",
        ["-m", "seed=0,1", "hydra/launcher=local", "hydra.launcher.n_jobs=0"],
        r"config error: hydra\.launcher\.n_jobs=0 is not allowed; allowed: the workers at once, an integer >= 1",
    ),
    Fault(
        "fused groups of no arm",
        ["-m", "seed=0,1", "hydra/launcher=fused", "hydra.launcher.max_arms=0"],
        r"config error: hydra\.launcher\.max_arms=0 is not allowed; allowed: an integer >= 1",
    ),
    Fault(
        "a dry run without -m",
        ["hydra.sweeper.dry_run=true"],
        r"config error: hydra\.sweeper\.dry_run=true is a sweep's dry run; allowed: with -m",
    ),
    Fault(
        "-m with --cfg and no job",
        ["-m", "--cfg", "seed=0,1"],
        r"config error: -m with --cfg 'seed=0,1': a sweep has no one config to print; allowed: -m \.\.\. --cfg job",
    ),
    Fault(
        "-m with --cfg hydra",
        ["-m", "seed=0,1", "--cfg", "hydra"],
        r"config error: -m with --cfg 'hydra': a sweep has no one config to print",
    ),
    Fault(
        "a sweep value of the wrong type",
        ["-m", "optim.lr=0.1,abc"],
        r"config error in the sweep job \[optim\.lr=abc .*\]: Error merging override optim\.lr=abc \(Value 'abc' of "
        r"type 'str' could not be converted to Float\)",
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
    assert not re.search(UNSAFE_HINT, err), err[-3000:]  # never a hint to load a refused file unsafely
    after = snapshot(root)
    assert {k: after.get(k) for k in before} == before  # every earlier file as it was
    assert [k for k in after.keys() - before.keys() if not k.startswith("data/")] == []  # (generated data aside)
