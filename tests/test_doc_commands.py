"""Every command and example of the docs is run by the tests (issue 26): README.md and every
page under docs/, found when the tests are collected (a new page is covered), so a doc edit that
breaks a command fails CI. tests/doc_blocks.py parses them; everything runs in this process
(imports once, no process per command). A failure names the command's ``file:line``.

Where each part lives
---------------------
- tests/doc_blocks.py: the parser (blocks, markers, commands: "What is a command", "Markers").
- tests/doc_runs.py: running one command in process: its root with the page's files, its
  environment, its placeholders filled in (PLACEHOLDER_BY_KEY, PLACEHOLDER_BY_NAME), the report
  command's sweep dir argument ("Placeholders and files").
- tests/doc_checks.py: what each is checked by (below): the dry run, a search sweeper's config,
  the real run, ``fails``, ``--help`` and the like, a marker's ``needs`` required by the arguments.
- tests/doc_env.py: what this machine lacks, simulated or refused: the network, training where a
  check must not train, and what ``needs gpu|cluster|download|file`` lets a check do without.
- this module: the tests (one per command or block) and their fixtures: ``offline`` (autouse
  here only) and ``docs`` (the data dirs and the report commands' finished sweep).

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
PLACEHOLDER_BY_KEY (tests/doc_runs.py) gets that value (``hydra.launcher.partition=<yours>`` ->
``docs_check``, ``hydra.sweep.dir=<...>`` -> a sweep dir under the command's root,
``retrain.finetune_lr=<best>`` -> 0.001); any other placeholder is replaced by its value in
PLACEHOLDER_BY_NAME (tests/doc_runs.py); one in neither fails, naming it. A report command's
sweep dir is the finished sweep (above).
A block (yaml, python, any) whose first line is ``# file: RELATIVE/PATH`` is that file: it is
written at that path in the root of every command and python block of its page before they run
(so ``--config-dir my_conf`` finds ``my_conf/retrain/wr_constant.yaml``).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from doc_blocks import PYTHON_LANGS, YAML_LANGS, Block, Command, commands, doc_files, markers_out_of_place
from doc_checks import (
    HINT,
    INFO_FLAGS,
    check_fails,
    check_info,
    check_search,
    dry_run,
    dry_run_args,
    failed,
    info,
    library_examples,
    needs_of,
    real_run,
    search_sweeper,
    skip_if_marked,
)
from doc_env import go_offline, patch_needs, unmet
from doc_runs import BLOCKS, command_env, make_root, paths, prune_exp, prune_exp_report, substituted, sweep_dir_arg

from prune_exp.store.files import SUMMARY_FILE

COMMANDS = [c for b in BLOCKS for c in commands(b)]
PRUNE_EXP = [c for c in COMMANDS if c.program == "prune-exp"]
REPORT = [c for c in COMMANDS if c.program == "prune-exp-report"]
PYTHON = [b for b in BLOCKS if b.lang in PYTHON_LANGS]
YAML = [b for b in BLOCKS if b.lang in YAML_LANGS]


# ---------------------------------------------------------------------------------- the fixtures
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


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No check reaches the network: a name other than this machine's is not resolved."""
    go_offline(monkeypatch)


# ------------------------------------------------------------------------------------- the tests
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
