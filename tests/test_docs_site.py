"""The docs site (mkdocs.yml): it builds with ``--strict`` (no broken link, anchor or page, no
page left out of the nav, no link to code that is not in the repository), its API page names
exactly the library surface, and the README's links into the docs land on a page and a heading."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.exceptions import Abort

from prune_exp import _PUBLIC

ROOT = Path(__file__).resolve().parent.parent


def build_site(config_file: Path, site: Path) -> None:
    build(load_config(str(config_file), strict=True, site_dir=str(site)))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_site(ROOT / "mkdocs.yml", out)  # raises Abort on any warning
    return out


def test_the_site_builds_strict(site: Path) -> None:
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    assert [p for p in pages if not (site / ("" if p == "index" else p) / "index.html").is_file()] == []


def test_the_api_page_names_every_public_name_from_its_module(site: Path) -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    named = dict(reversed(m.group(1).rsplit(".", 1)) for m in re.finditer(r"^::: (\S+)$", text, re.M))
    assert named == _PUBLIC
    html = (site / "api" / "index.html").read_text()
    assert all(f'id="{module}.{name}"' in html for name, module in _PUBLIC.items())  # rendered by mkdocstrings


@pytest.mark.parametrize(
    "line, warning",
    [
        ("[a heading that is not there](strategies.md#no-such-heading)", "does not contain an anchor"),
        ("[a page that is not there](nowhere.md)", "not found among documentation files"),
        ("[code that is not there](../prune_exp/no_such_module.py)", "not in the repository"),
    ],
)
def test_a_broken_link_fails_the_build(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, line: str, warning: str
) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "prune_exp").symlink_to(ROOT / "prune_exp")  # the code the pages link to
    with (tmp_path / "docs" / "usage.md").open("a") as f:
        f.write(f"\n{line}\n")
    with pytest.raises(Abort):
        build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert warning in caplog.text


def test_a_link_to_code_becomes_its_path(site: Path) -> None:
    """docs/internals.md links to code as GitHub shows it (../prune_exp/...); the site shows the path."""
    sources = re.findall(r"\]\(\.\./([^)#]+)\)", (ROOT / "docs" / "internals.md").read_text())
    assert sources, "docs/internals.md has no link to code to check this with"
    html = (site / "internals" / "index.html").read_text()
    assert all(f"<code>{path}</code>" in html for path in sources)


def test_the_readmes_links_into_the_docs_land(site: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)\s]+)\)", readme)
    assert links
    for link in links:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).is_file(), link
        if path.endswith(".md") and anchor:
            page = site / Path(path).relative_to("docs").with_suffix("") / "index.html"
            assert f'id="{anchor}"' in page.read_text(), link
