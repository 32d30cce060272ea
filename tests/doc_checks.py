"""What each command of the docs is checked by (tests/test_doc_commands.py's docstring, "What each
is checked by"): the dry run, a search sweeper's config, the real run of ``docs-check: run``, bad
input shown failing (``docs-check: fails``), ``--help`` and the like; and the failure messages,
which name the command's ``file:line``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from doc_blocks import Block, Command
from doc_env import refuse_training
from doc_runs import Result, key_of, overrides, page_files, paths, prune_exp, without_paths

from prune_exp.store.files import RECORDS_FILE, STATUS_FILE, SUMMARY_FILE

INFO_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc"}
SLURM = "slurm"  # in a launcher's name: hydra/launcher=slurm, fused_slurm
HINT = (
    "If the command needs a GPU, a cluster, a download or a file the docs do not show, mark its block "
    "(tests/test_doc_commands.py's docstring): <!-- docs-check: needs gpu|cluster|download|file -->"
)


def failed(command: Command, args: Sequence[str], res: Result, why: str = "") -> str:
    return f"{command.id}: {command.text}\nran: {' '.join(args)}\n{why}{res.tail()}\n{HINT}"


def skip_if_marked(block: Block) -> None:
    if block.marker.error:
        pytest.fail(block.marker.error)
    if block.marker.skip:
        pytest.skip(f"docs-check: skip {block.marker.skip}")


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


# ------------------------------------------------------------------------------- which check
def multirun(args: Sequence[str]) -> bool:
    return bool({"-m", "--multirun"} & set(args))


def has_cfg(args: Sequence[str]) -> bool:
    return any(
        a in ("--cfg", "-c") or (a.startswith(("--cfg=", "-c")) and not a.startswith(("-cd", "-cp", "-cn")))
        for a in args
    )


def info(args: Sequence[str]) -> bool:
    return bool(INFO_FLAGS & set(args)) or (has_cfg(args) and not multirun(args))


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


# ---------------------------------------------------------------------------------- the checks
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


def library_examples() -> set[str]:
    """The code tests/test_library.py runs (and checks far more closely): not run again here."""
    try:
        import test_library

        return {test_library.readme_example().strip()}
    except Exception:  # its example moved or its reader changed: then tests/test_doc_commands.py runs the block
        return set()
