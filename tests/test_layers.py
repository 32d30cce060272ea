"""The layers as folders: the import contract (.importlinter) holds, and every package of
prune_exp is in it, so that a new folder cannot sit outside the layers unseen."""

from __future__ import annotations

import configparser
import contextlib
import io
from pathlib import Path

from importlinter.cli import lint_imports

from prune_exp import __file__ as package_init

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / ".importlinter"


def test_the_import_contract_holds() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lint_imports(config_filename=str(CONTRACT), no_cache=True)
    assert code == 0, out.getvalue()[-3000:]


def test_every_package_of_prune_exp_is_a_layer() -> None:
    parser = configparser.ConfigParser()
    parser.read(CONTRACT)
    layers = parser["importlinter:contract:layers"]["layers"].split()
    named = {name for line in layers for name in line.replace("|", " ").replace(":", " ").split()}
    packages = {p.parent.name for p in Path(package_init).parent.glob("*/__init__.py")}
    assert packages == named
