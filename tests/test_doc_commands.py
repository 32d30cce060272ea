"""Every command and example of the docs is run by the tests (issue 26): README.md and every
page under docs/, found when the tests are collected (a new page is covered), so a doc edit that
breaks a command fails CI. tests/doc_blocks.py parses them; everything runs in this process
(imports once, no process per command). A failure names the command's ``file:line``.

What is a command
-----------------
A line of a fenced shell block (```bash, ```sh, ```console, or ``` with no language): its
backslash-continued lines joined (a ``> `` continuation prompt dropped), a leading ``$ ``
prompt and a trailing ``# comment`` (a ``#`` that starts a word outside quotes) stripped, split
at ``&&``, ``||``, ``;``, ``|`` and ``&``, its leading ``VAR=value`` words its environment
(``PYTHONPATH`` relative to the command's root; also put on sys.path for the command). Once a
line of a block starts with ``$ ``, the lines without one are output, not commands. Ours are
``prune-exp``, ``prune-exp-report``, ``python -m prune_exp``, each also after ``uv run``
(doc_blocks.PROGRAMS); any other (``uv sync``, ``pip install``, ``tensorboard``, ``mlflow ui``)
is left out. Each command, each ```python block and each ```yaml block is one test.

What each is checked by
-----------------------
- ``prune-exp``: its dry run (``-m ... --cfg job``, i.e. ``hydra.sweeper.dry_run=true``):
  every job of the sweep composed and checked, its data loaded and checked once per data set,
  the jobs listed. A multirun gets ``--cfg job`` added, a single run runs as ``-m ARGS --cfg
  job`` (a sweep of one job), a multirun that has ``--cfg job`` runs as written. Asserted: exit
  status 0, as many jobs listed as the listing's first line counts (at least one), nothing
  trained and no file written under the command's root. A dry run that another command of the
  docs already passed with the same arguments, environment, markers and page files (the README
  and a page show one command both) is not run again.
- ``prune-exp --help`` (``--hydra-help``, ``--info``, ``--version``, ``--cfg`` without ``-m``):
  run as written; exit 0, something printed.
- ``prune-exp`` with a search sweeper (``hydra/sweeper=tune``, ``optuna``: any but
  ``prune_exp``), which has no dry run: the command's config composed with its sweeper and
  ``hydra.sweeper.*`` settings, the sweeper's direction checked against the select metric as the
  preflight does, then the dry run of the same jobs under ``prune_exp``'s sweeper with each
  searched ``interval(a, b)`` (tagged or not) replaced by its two ends ``a,b``.
- ``prune-exp-report``: ``prune_exp.report.cli.main`` (its entry point) on a copy of one small
  finished sweep made once per module (a real ``debug=fast`` multirun of finetune,
  weight_rewind and lr_rewind x 2 seeds, in process). Its sweep dir argument (the positional one
  with a ``/``, a ``<placeholder>`` or in capitals such as ``SWEEP_DIR``, else the first
  positional one) becomes that copy (no report in it yet). Asserted: exit 0 and
  summary.md written (``--help``: exit 0).
- ```python blocks: ``exec`` in a fresh namespace, in a new working directory that holds the
  page's files (below) and is on sys.path; it must not raise. The library example that
  tests/test_library.py runs (the block its ``readme_example()`` returns) is skipped here.
- ```yaml blocks: parsed (yaml.safe_load).

Every command gets a root of its own (``paths.root_dir`` and the working directory, its
outputs and caches under it: the repo's outputs/ is never touched) and the session's data dir
(``paths.data_dir``, tests/conftest.py: MNIST-1D generated once); a command's own
``paths.root_dir``, ``paths.data_dir`` or ``paths.cache_dir`` is replaced by these. Nothing
reaches the network (no host name but this machine's is resolved), and a torchvision set missing
from the data dir is refused at once; both errors name the ``needs download`` marker below.

Markers
-------
An HTML comment on the line right above a block's opening fence (no blank line between; several
may stack, and they merge); it applies to every command of the block; the page shows nothing:

    <!-- docs-check: run -->
        The block's commands also run for real after their check, in process, in a fresh root:
        exit 0, the run dir (a multirun: its sweep dir and each job dir in it) holds done jobs
        with records, and a sweep's summary.md. Only for cheap commands (``debug=fast``). With
        ``needs``: only where the thing is here (a GPU for ``needs gpu``; never for cluster or
        download: the tests neither submit nor download).
    <!-- docs-check: needs gpu -->     (or cluster, download, file; several: needs gpu cluster)
        What the command needs and the tests lack; it is checked as far as possible without it:
        gpu: the dry run, the preflight's check that a GPU is here passed over where none is
          (everything else of every job checked). Required on a command with ``trainer=gpu`` or
          ``trainer.accelerator=gpu|cuda``. A python block with it runs where a GPU is, else it
          is only compiled.
        cluster: the dry run, as is: it submits nothing, and the SLURM launchers' settings and
          every job are checked without ``sbatch``. Required on a command with
          ``hydra/launcher=*slurm*``. A python block with it is only compiled.
        download: the dry run, in a data dir of its own, where a torchvision download writes
          small files in the set's own format instead (tests/helpers.py's fake_mnist,
          fake_cifar, their md5 checks passed) and ImageNet-style data gets one tiny image per
          class folder: the data is loaded and checked for real. A python block with it is
          only compiled.
        file: the dry run, where a ``dense.weights`` / ``dense.rewind_weights`` file that does
          not exist is written when the preflight first reads it: the state dict of the network
          that job's config builds. A python block with it is only compiled.
    <!-- docs-check: fails -->
        Bad input shown failing (a ``$ `` transcript): the command runs as written, in process,
        with training refused; it must exit non-zero without getting past the preflight, and
        every output line shown after it (but those with ``...``) must be in what it printed.
        A python block with it must raise.
    <!-- docs-check: skip REASON -->
        Not checked; reported as skipped with REASON (a block that is not a command to check).

A marker that is unknown, or that is not right above a fence, fails
test_every_docs_check_marker_is_known_and_right_above_a_block (and the block's tests).

Placeholders and files
----------------------
A ``<...>`` in a command is a placeholder. An override ``KEY=...<...>...`` whose KEY is in
PLACEHOLDER_BY_KEY gets that value (``hydra.launcher.partition=<yours>`` -> ``docs_check``,
``hydra.sweep.dir=<...>`` -> a sweep dir under the command's root, ``retrain.finetune_lr=<best>``
-> 0.001); any other placeholder is replaced by its value in PLACEHOLDER_BY_NAME; one in neither
fails, naming it. A report command's sweep dir is the finished sweep (above).
A block (yaml, python, any) whose first line is ``# file: RELATIVE/PATH`` is that file: it is
written at that path in the root of every command and python block of its page before they run
(so ``--config-dir my_conf`` finds ``my_conf/retrain/wr_constant.yaml``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from doc_blocks import (
    PYTHON_LANGS,
    YAML_LANGS,
    Block,
    Command,
    all_blocks,
    commands,
    doc_files,
    markers_out_of_place,
)

from prune_exp.store.files import RECORDS_FILE, STATUS_FILE, SUMMARY_FILE

BLOCKS = all_blocks()
COMMANDS = [c for b in BLOCKS for c in commands(b)]
PRUNE_EXP = [c for c in COMMANDS if c.program == "prune-exp"]
REPORT = [c for c in COMMANDS if c.program == "prune-exp-report"]
PYTHON = [b for b in BLOCKS if b.lang in PYTHON_LANGS]
YAML = [b for b in BLOCKS if b.lang in YAML_LANGS]

PLACEHOLDER_BY_KEY = {
    "hydra.launcher.partition": "docs_check",
    "hydra.launcher.account": "docs_check",
    "hydra.launcher.qos": "docs_check",
    "hydra.launcher.tasks_per_node": "1",
    "hydra.sweep.dir": "outputs/docs_check/multiruns/sweep",  # a sweep dir to resume: none there yet
    "hydra.run.dir": "outputs/docs_check/runs/run",
    "retrain.finetune_lr": "0.001",  # <best>: a tuning sweep's result
    "retrain.lr_peak": "0.1",
    "select_metric": "loss",
}
PLACEHOLDER_BY_NAME = {
    "<yours>": "docs_check",
    "<partition>": "docs_check",
    "<account>": "docs_check",
    "<best>": "0.001",
    "<devices>": "1",
    "<n>": "1",
    "<seed>": "0",
    "<metric>": "loss",  # prune-exp-report --metric <metric>
    "<strategy>": "finetune",  # prune-exp-report --baseline <strategy>
}
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc"}
SLURM = "slurm"  # in a launcher's name: hydra/launcher=slurm, fused_slurm


# ------------------------------------------------------------------------------- the environment
@dataclass
class Docs:
    """What the module's checks share: the data dir, the data dir that downloads go to, and one
    finished sweep for the report commands; the last two made on first use."""

    factory: pytest.TempPathFactory
    data_dir: Path
    _downloads: Path | None = None
    _sweep: Path | None = None

    def downloads(self) -> Path:
        """A data dir of its own for ``needs download`` (its fake files never reach an unmarked
        command), with the shared MNIST-1D."""
        if self._downloads is None:
            self._downloads = self.factory.mktemp("downloads")
            (self.data_dir / "mnist1d").mkdir(exist_ok=True)
            (self._downloads / "mnist1d").symlink_to(self.data_dir / "mnist1d")
        return self._downloads

    def sweep(self) -> Path:
        """A real finished sweep: debug=fast, 3 strategies x 2 seeds; no report yet (the report
        commands write it)."""
        if self._sweep is None:
            root = self.factory.mktemp("report_sweep")
            args = ["-m", "debug=fast", "retrain=finetune,weight_rewind,lr_rewind", "seed=0,1"]
            args += ["efficiency.measure_speed=false", "~hydra.callbacks.report", f"hydra.sweep.dir={root / 'sweep'}"]
            res = prune_exp(root, [*args, *paths(root, self.data_dir)])
            assert res.code == 0, res.tail()
            self._sweep = root / "sweep"
        return self._sweep


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Docs:
    return Docs(tmp_path_factory, data_dir)


def page_files(doc: Path) -> dict[str, str]:
    """The page's ``# file:`` blocks: relative path -> content."""
    out = {}
    for block in BLOCKS:
        if block.doc == doc and block.file is not None:
            path = Path(block.file)
            assert not path.is_absolute() and ".." not in path.parts, (
                f"{block.id}: # file: {block.file} leaves the root"
            )
            out[block.file] = block.text
    return out


def make_root(doc: Path, root: Path) -> Path:
    """``root`` with the page's files written in it."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in page_files(doc).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def paths(root: Path, data_dir: Path) -> list[str]:
    return [f"paths.root_dir={root}", f"paths.data_dir={data_dir}"]


# ------------------------------------------------------------------------------ running commands
@dataclass
class Result:
    code: int
    out: str
    err: str

    def tail(self, n: int = 3000) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out[-n:]}\n--- stderr\n{self.err[-n:]}"


@contextlib.contextmanager
def captured(root: Path, argv0: str, args: Sequence[str]) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    argv, cwd = sys.argv, os.getcwd()
    sys.argv = [argv0, *args]
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        sys.argv = argv
        os.chdir(cwd)


def prune_exp(root: Path, args: Sequence[str]) -> Result:
    """``prune-exp ARGS`` in this process, in ``root``, through the command's own exit path."""
    from prune_exp.app.run import _exit_status

    with captured(root, "prune-exp", args) as (out, err):
        code = _exit_status()
    if isinstance(code, str):
        err.write(code + "\n")
        code = 1
    return Result(int(code or 0), out.getvalue(), err.getvalue())


def prune_exp_report(root: Path, args: Sequence[str]) -> Result:
    """``prune-exp-report ARGS`` in this process (prune_exp.report.cli.main, the entry point)."""
    from prune_exp.report.cli import main

    with captured(root, "prune-exp-report", args) as (out, err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's --help, usage errors and parser.exit
            code = e.code
    if isinstance(code, str):
        err.write(code + "\n")
        code = 1
    return Result(int(code or 0), out.getvalue(), err.getvalue())


def overrides(args: Sequence[str]) -> list[str]:
    return [a for a in args if not a.startswith("-") and "=" in a]


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def substituted(command: Command, args: Sequence[str] | None = None, done: Sequence[int] = ()) -> list[str]:
    """The command's arguments with its placeholders filled in (PLACEHOLDER_BY_KEY, _BY_NAME);
    ``done``: the arguments the caller has replaced already."""
    out = list(command.args if args is None else args)
    for n, names in command.placeholders.items():
        if n in done:
            continue
        arg = out[n]
        key, eq, _ = arg.partition("=")
        if eq and key.lstrip("+~") in PLACEHOLDER_BY_KEY:
            out[n] = f"{key}={PLACEHOLDER_BY_KEY[key.lstrip('+~')]}"
            continue
        for name in names:
            if name not in PLACEHOLDER_BY_NAME:
                pytest.fail(
                    f"{command.id}: the placeholder {name} in {arg!r} has no value: add it to PLACEHOLDER_BY_NAME "
                    f"(or its key to PLACEHOLDER_BY_KEY) in tests/test_doc_commands.py"
                )
            arg = arg.replace(name, PLACEHOLDER_BY_NAME[name])
        out[n] = arg
    return out


def needs_of(args: Sequence[str]) -> set[str]:
    """What a command needs, judged from its arguments: a SLURM launcher, a GPU."""
    found = set()
    for o in overrides(args):
        key, value = key_of(o), o.split("=", 1)[1]
        if key == "hydra/launcher" and SLURM in value:
            found.add("cluster")
        if (key == "trainer" and "gpu" in value) or (key == "trainer.accelerator" and re.search("gpu|cuda", value)):
            found.add("gpu")
    return found


def unmet(needs: set[str] | frozenset[str]) -> set[str]:
    """What of ``needs`` this machine lacks for a real run (the tests never submit or download)."""
    import torch

    return {n for n in needs if n in ("cluster", "download") or (n == "gpu" and not torch.cuda.is_available())}


HINT = (
    "If the command needs a GPU, a cluster, a download or a file the docs do not show, mark its block "
    "(tests/test_doc_commands.py's docstring): <!-- docs-check: needs gpu|cluster|download|file -->"
)


NEEDS_DOWNLOAD = "<!-- docs-check: needs download -->"


def failed(command: Command, args: Sequence[str], res: Result, why: str = "") -> str:
    return f"{command.id}: {command.text}\nran: {' '.join(args)}\n{why}{res.tail()}\n{HINT}"


# ------------------------------------------------------------------------------------ the patches
@contextlib.contextmanager
def command_env(command: Command, root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command's ``VAR=value`` words as this process's environment; ``PYTHONPATH`` (relative
    to the root) also on sys.path, and the modules imported from there forgotten after."""
    added = []
    for key, value in command.env.items():
        if key == "PYTHONPATH":
            dirs = [str((root / p).resolve()) for p in value.split(os.pathsep) if p]
            added = [d for d in dirs if d not in sys.path]
            sys.path[:0] = added
            value = os.pathsep.join([*dirs, os.environ.get("PYTHONPATH", "")])
        monkeypatch.setenv(key, value)
    try:
        yield
    finally:
        for d in added:
            sys.path.remove(d)
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(root.resolve())):
                del sys.modules[name]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
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
    """What the markers let the checks do without the thing (the module docstring); the set
    that the weights files made for ``needs file`` are added to. ``downloads``: the data dir
    that the fake downloads are written to (each file in it is one)."""
    import torch

    import prune_exp.app.preflight as preflight
    from prune_exp.data.imagefolder import ImageFolderDataModule
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
        import torchvision.datasets.utils as tv_utils

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
    if "gpu" in needs and not torch.cuda.is_available():
        monkeypatch.setattr(preflight, "check_accelerator", lambda accelerator: None)
    if "file" in needs:
        original_fit = preflight.check_weights_fit

        def fit(net, path: Path, key: str = "dense.weights") -> None:
            if not path.exists():
                write_state_dict(net, path)
                made.add(path.resolve())
            original_fit(net, path, key)

        monkeypatch.setattr(preflight, "check_weights_fit", fit)
    return made


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


# ------------------------------------------------------------------------------------ the checks
def skip_if_marked(block: Block) -> None:
    if block.marker.error:
        pytest.fail(block.marker.error)
    if block.marker.skip:
        pytest.skip(f"docs-check: skip {block.marker.skip}")


def files_under(root: Path) -> set[Path]:
    return {p.resolve() for p in root.rglob("*") if p.is_file()}


PASSED: dict[tuple, str] = {}  # each dry run that passed (its arguments, env, needs, files) -> by which command
DRY_RUN_FIRST = re.compile(r"^dry run: (\d+) jobs?\b", re.M)
DRY_RUN_JOB = re.compile(r"^#\d+ ", re.M)


def dry_run(command: Command, args: list[str], root: Path, data_dir: Path, made: set[Path]) -> None:
    """The dry run of ``args`` (a multirun with --cfg job) passes, lists its jobs, and writes
    nothing (but the files in ``made``, which the test made)."""
    key = (tuple(without_paths(args)), tuple(sorted(command.env.items())), command.marker.needs)
    key += (tuple(sorted(page_files(command.block.doc).items())),)
    if key in PASSED:  # the same dry run as another command's (README and a page show it both)
        return
    before = files_under(root)
    full = [*without_paths(args), *paths(root, data_dir)]
    with pytest.MonkeyPatch.context() as patches:
        refused = refuse_training(patches)
        res = prune_exp(root, full)
    assert not refused, failed(command, full, res, "the dry run was about to train\n")
    assert res.code == 0, failed(command, full, res)
    first = DRY_RUN_FIRST.search(res.out)
    assert first is not None, failed(command, full, res, "no dry-run listing\n")
    assert int(first.group(1)) == len(DRY_RUN_JOB.findall(res.out)) >= 1, failed(command, full, res)
    written = files_under(root) - before - made
    assert not written, f"{command.id}: the dry run wrote {sorted(map(str, written))[:5]}"
    PASSED[key] = command.id


def without_paths(args: Sequence[str]) -> list[str]:
    """``args`` without the command's own paths.root_dir, data_dir and cache_dir (the test's own)."""
    own = ("paths.root_dir", "paths.data_dir", "paths.cache_dir")
    return [a for a in args if not ("=" in a and not a.startswith("-") and key_of(a) in own)]


def multirun(args: Sequence[str]) -> bool:
    return bool({"-m", "--multirun"} & set(args))


def has_cfg(args: Sequence[str]) -> bool:
    return any(
        a in ("--cfg", "-c") or (a.startswith(("--cfg=", "-c")) and not a.startswith(("-cd", "-cp", "-cn")))
        for a in args
    )


def dry_run_args(args: Sequence[str]) -> list[str]:
    """A multirun with --cfg job: a single run as a sweep of one job."""
    args = list(args)
    if not multirun(args):
        args = ["-m", *args]
    return args if has_cfg(args) else [*args, "--cfg", "job"]


def search_sweeper(args: Sequence[str]) -> str | None:
    """The sweeper a command names, unless it is prune_exp's (the one with a dry run)."""
    for o in overrides(args):
        if key_of(o) == "hydra/sweeper" and o.split("=", 1)[1] != "prune_exp":
            return o.split("=", 1)[1]
    return None


def check_search(command: Command, args: list[str], root: Path, data_dir: Path, made: set[Path]) -> None:
    """A search sweeper's command: its config with the sweeper composed and its direction
    checked; then the dry run of its jobs at the ends of every searched interval."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    from prune_exp.app.preflight import check_sweeper_direction
    from prune_exp.app.run import conf_dir

    parser = OverridesParser.create()
    fixed, jobs = [], []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            jobs.append(arg)
            continue
        parsed = parser.parse_overrides([arg])[0]
        if not parsed.is_sweep_override():
            fixed.append(arg)
        value = parsed.value()
        if isinstance(value, IntervalSweep):
            arg = f"{parsed.get_key_element()}={value.start!r},{value.end!r}"
        if not key_of(arg).startswith(("hydra/sweeper", "hydra.sweeper")):
            jobs.append(arg)
    config_dirs = [
        f"file://{(root / args[i + 1]).resolve()}" for i, a in enumerate(args[:-1]) if a in ("--config-dir", "-cd")
    ]
    if config_dirs:  # --config-dir, as the compose API takes it
        fixed.append(f"hydra.searchpath=[{','.join(config_dirs)}]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
            cfg = compose("run", overrides=fixed, return_hydra_config=True)
            check_sweeper_direction(cfg)
    except Exception as e:
        pytest.fail(f"{command.id}: {command.text}\nits sweeper's config: {type(e).__name__}: {e}\n{HINT}")
    finally:
        GlobalHydra.instance().clear()
    dry_run(command, dry_run_args(jobs), root, data_dir, made)


def real_run(command: Command, args: list[str], root: Path, data_dir: Path) -> None:
    """``args`` run for real: exit 0, and its run or sweep dir holds done jobs (and a summary)."""
    import json

    from prune_exp.app.session import SESSION

    SESSION.dir = ""
    full = [*without_paths(args), *paths(root, data_dir)]
    res = prune_exp(root, full)
    assert res.code == 0, failed(command, full, res)
    where = Path(SESSION.dir if Path(SESSION.dir).is_absolute() else root / SESSION.dir)
    jobs = [where] if not multirun(args) else [d for d in where.iterdir() if (d / STATUS_FILE).exists()]
    assert jobs, f"{command.id}: no job dir in {where}"
    for job in jobs:
        assert json.loads((job / STATUS_FILE).read_text())["state"] == "done", f"{command.id}: {job}"
        assert (job / RECORDS_FILE).stat().st_size > 0, f"{command.id}: {job}"
    if multirun(args):
        assert (where / SUMMARY_FILE).exists(), f"{command.id}: no {SUMMARY_FILE} in {where}"


def shown_output(command: Command, res: Result) -> list[str]:
    """The output lines the docs show after the command that it did not print."""
    printed = " ".join((res.out + "\n" + res.err).split())
    return [
        line.strip()
        for line in command.output
        if line.strip() and "..." not in line and "…" not in line and " ".join(line.split()) not in printed
    ]


def check_fails(command: Command, args: list[str], root: Path, data_dir: Path) -> None:
    """Bad input shown failing: it exits non-zero, before any training, printing what the docs show."""
    with pytest.MonkeyPatch.context() as patches:
        refused = refuse_training(patches)
        full = [*without_paths(args), *paths(root, data_dir)]
        res = prune_exp(root, full)
    assert not refused, failed(command, full, res, "docs-check: fails, but the preflight let it through\n")
    assert res.code != 0, failed(command, full, res, "docs-check: fails, but it exited 0\n")
    missing = shown_output(command, res)
    assert not missing, failed(command, full, res, f"the docs show, and it did not print: {missing}\n")


def check_info(command: Command, args: list[str], root: Path, data_dir: Path) -> None:
    """--help, --cfg (no -m) and the like: exit 0, something printed."""
    full = [*without_paths(args), *paths(root, data_dir)]
    res = prune_exp(root, full)
    assert res.code == 0 and res.out.strip(), failed(command, full, res)


def info(args: Sequence[str]) -> bool:
    return bool(INFO_FLAGS & set(args)) or (has_cfg(args) and not multirun(args))


@pytest.mark.parametrize("command", PRUNE_EXP, ids=[c.id for c in PRUNE_EXP])
def test_a_prune_exp_command_of_the_docs(
    command: Command, docs: Docs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_if_marked(command.block)
    marker = command.marker
    missing = needs_of(command.args) - marker.needs
    assert not missing, (
        f"{command.id}: {command.text}\nneeds {' and '.join(sorted(missing))}: mark its block "
        f"<!-- docs-check: needs {' '.join(sorted(missing | marker.needs))} -->"
    )
    args = substituted(command)
    data_dir = docs.downloads() if "download" in marker.needs else docs.data_dir
    root = make_root(command.block.doc, tmp_path / "root")
    with command_env(command, root, monkeypatch):
        made = patch_needs(marker.needs, docs.downloads(), monkeypatch)
        if marker.fails:
            check_fails(command, args, root, data_dir)
        elif info(args):
            check_info(command, args, root, data_dir)
        elif search_sweeper(args) is not None:
            check_search(command, args, root, data_dir, made)
        else:
            dry_run(command, dry_run_args(args), root, data_dir, made)
        if marker.run and not marker.fails and not info(args) and not unmet(marker.needs):
            real_run(command, args, make_root(command.block.doc, tmp_path / "run"), data_dir)


def sweep_dir_arg(args: Sequence[str], command: Command) -> int | None:
    """The index of a report command's sweep dir argument."""
    positional = [i for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "--metric")]
    for i in positional:
        if "/" in args[i] or i in command.placeholders or args[i].isupper():
            return i
    return positional[0] if positional else None


@pytest.mark.parametrize("command", REPORT, ids=[c.id for c in REPORT])
def test_a_prune_exp_report_command_of_the_docs(command: Command, docs: Docs, tmp_path: Path) -> None:
    skip_if_marked(command.block)
    args = list(command.args)
    if INFO_FLAGS & set(args):
        res = prune_exp_report(tmp_path, args)
        assert res.code == 0 and res.out.strip(), failed(command, args, res)
        return
    sweep = tmp_path / "sweep"
    shutil.copytree(docs.sweep(), sweep)
    assert not (sweep / SUMMARY_FILE).exists()
    at = sweep_dir_arg(args, command)
    assert at is not None, f"{command.id}: {command.text}: no sweep dir argument"
    args[at] = str(sweep)
    args = substituted(command, args, done=[at])
    res = prune_exp_report(tmp_path, args)
    assert res.code == 0, failed(command, args, res)
    assert (sweep / SUMMARY_FILE).exists(), failed(command, args, res, f"no {SUMMARY_FILE} written\n")


def library_examples() -> set[str]:
    """The code tests/test_library.py runs (and checks far more closely): not run again here."""
    try:
        import test_library

        return {test_library.readme_example().strip()}
    except Exception:  # its example moved or its reader changed: then this module runs the block
        return set()


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_a_python_example_of_the_docs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skip_if_marked(block)
    if block.text.strip() in library_examples():
        pytest.skip("run by tests/test_library.py (its readme_example())")
    code = compile(block.text, block.id, "exec")
    if unmet(block.marker.needs) or "file" in block.marker.needs:
        return  # only compiled: it needs what the tests do not have
    cwd = make_root(block.doc, tmp_path / "cwd")
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(code, {"__name__": "__docs_example__"})
    except Exception as e:
        if block.marker.fails:
            return
        raise AssertionError(f"{block.id}: the example raised {type(e).__name__}: {e}\n{HINT}") from e
    finally:
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(cwd)):
                del sys.modules[name]
    assert not block.marker.fails, f"{block.id}: docs-check: fails, but it ran"


@pytest.mark.parametrize("block", YAML, ids=[b.id for b in YAML])
def test_a_yaml_block_of_the_docs_parses(block: Block) -> None:
    skip_if_marked(block)
    yaml.safe_load(block.text)


def test_every_docs_check_marker_is_known_and_right_above_a_block() -> None:
    problems = [p for doc in doc_files() for p in markers_out_of_place(doc)]
    for block in BLOCKS:
        checked = commands(block) or block.lang in PYTHON_LANGS
        if (block.marker.run or block.marker.fails) and not checked:
            problems.append(f"{block.id}: docs-check: run/fails on a block with no command to run")
    assert not problems, "\n".join(problems)


def test_the_docs_have_commands_to_check() -> None:
    """The parser finds the docs' commands (a parser that found none would pass every check)."""
    assert any(b.doc.name == "README.md" for b in BLOCKS)
    assert PRUNE_EXP, "no prune-exp command found in README.md or docs/*.md"
