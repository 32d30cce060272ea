"""Running one command of the docs in this process (tests/test_doc_commands.py's docstring):
its root with the page's ``# file:`` blocks, its arguments with the placeholders filled in
(PLACEHOLDER_BY_KEY, PLACEHOLDER_BY_NAME), its ``VAR=value`` environment, and ``prune-exp`` /
``prune-exp-report`` called through their entry points with the output captured."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from doc_blocks import Command, all_blocks

BLOCKS = all_blocks()  # the docs' blocks, parsed once (when the tests are collected)

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


# -------------------------------------------------------------------------------- the root
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


# ----------------------------------------------------------------------------- the arguments
def overrides(args: Sequence[str]) -> list[str]:
    return [a for a in args if not a.startswith("-") and "=" in a]


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def without_paths(args: Sequence[str]) -> list[str]:
    """``args`` without the command's own paths.root_dir, data_dir and cache_dir (the test's own)."""
    own = ("paths.root_dir", "paths.data_dir", "paths.cache_dir")
    return [a for a in args if not ("=" in a and not a.startswith("-") and key_of(a) in own)]


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
                    f"(or its key to PLACEHOLDER_BY_KEY) in tests/doc_runs.py"
                )
            arg = arg.replace(name, PLACEHOLDER_BY_NAME[name])
        out[n] = arg
    return out


def sweep_dir_arg(args: Sequence[str], command: Command) -> int | None:
    """The index of a report command's sweep dir argument."""
    positional = [i for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "--metric")]
    for i in positional:
        if "/" in args[i] or i in command.placeholders or args[i].isupper():
            return i
    return positional[0] if positional else None
