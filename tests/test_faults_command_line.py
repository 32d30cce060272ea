"""Command-line cases next to the fault suite (test_faults_table.py) that must work, not fail:
the keys of a free dict, the docs' list of columns that differ between reruns, one dir per
process, and prune.rounds from the command line over a config file's prune.sparsity.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_keys_of_a_free_dict_are_the_users_not_typos() -> None:
    """prune.layer_rate_scale maps the user's patterns: any key may be added to it."""
    from helpers import composed

    from prune_exp.config import check_known_keys

    with composed(["+prune.layer_rate_scale.classifier=0.5"], hydra=True) as cfg:
        check_known_keys(cfg)
        assert cfg.prune.layer_rate_scale.classifier == 0.5


def test_the_docs_name_every_column_that_differs_between_reruns() -> None:
    from helpers import REPO

    from prune_exp.store.records import VOLATILE

    readme = (REPO / "docs" / "internals.md").read_text()
    start = readme.index("Only these columns differ between two runs of one")
    paragraph = readme[start : readme.index("\n\n", start)]
    assert [c for c in VOLATILE if f"`{c}`" not in paragraph] == []


def test_two_commands_started_in_the_same_second_get_different_dirs(tmp_path: Path) -> None:
    """The default run and sweep dirs end in the process id: two processes, two dirs."""
    code = (
        "import os\n"
        "from hydra import compose, initialize_config_dir\n"
        "from prune_exp.app.run import conf_dir\n"  # (no torch: composing is all this needs)
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


@pytest.mark.parametrize(
    ("args", "rounds", "sparsity", "note"),
    [
        (["experiment=compare", "prune.rounds=2"], 2, 0.36, "prune.rounds=2 from the command line sets prune.sparsity"),
        (["experiment=compare", "prune.sparsity=0.8"], None, 0.8, None),  # no rounds anywhere: nothing to say
        (["prune.rounds=3"], 3, 0.488, "prune.rounds=3 from the command line sets prune.sparsity=0.488"),
    ],
)
def test_the_command_lines_rounds_win_over_a_config_files_sparsity(
    args: list[str], rounds: int | None, sparsity: float, note: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """An experiment file's prune.sparsity gives way to prune.rounds from the command line, and
    the log says so; a config file's prune.rounds gives way to prune.sparsity the same way."""
    from helpers import composed

    from prune_exp.app.run import _note_once, to_run_config

    _note_once.cache_clear()
    with composed(args) as cfg, caplog.at_level("INFO", logger="prune_exp"):
        rc = to_run_config(cfg, resolve_paths=False, overrides=args)
    assert (rc.prune.rounds, round(rc.prune.sparsity, 9)) == (rounds, sparsity)
    notes = [r.getMessage() for r in caplog.records if "from the command line" in r.getMessage()]
    assert len(notes) == (note is not None) and all(note in n for n in notes), notes
    # a config file's rounds (composed here as if an experiment set it), the command line's sparsity
    with composed([*args[:-1], "prune.rounds=2", "prune.sparsity=0.7"]) as cfg:
        rc = to_run_config(cfg, resolve_paths=False, overrides=["prune.sparsity=0.7"])
    assert (rc.prune.rounds, rc.prune.sparsity) == (None, 0.7)
