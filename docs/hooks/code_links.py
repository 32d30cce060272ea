"""mkdocs hook: links from the docs to the repository's code, checked and kept.

A page links to a file outside ``docs/`` as GitHub shows it from the page's own place
(``[group.py](../prune_exp/fused/group.py)``), which mkdocs cannot resolve. Before a page is
rendered, each such link is checked against the repository (a path that does not exist fails
``mkdocs build --strict`` with the page and the path) and rewritten: to ``repo_url``'s file
view when mkdocs.yml sets one, else to the path as code, so the site shows where the code is.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.plugins.code_links")
LINK = re.compile(r"\[([^\]]+)\]\((\.\./[^)#\s]+)(#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page, config, files) -> str:  # mkdocs' Page, MkDocsConfig, Files
    docs = Path(config["docs_dir"]).resolve()
    here = (docs / page.file.src_path).parent
    root = docs.parent
    repo = (config.get("repo_url") or "").rstrip("/")

    def rewrite(m: re.Match) -> str:
        text, target = m.group(1), m.group(2)
        path = (here / target).resolve()
        if not path.is_relative_to(root) or path.is_relative_to(docs):
            return m.group(0)  # a link inside docs/ (or out of the repository): mkdocs' own checks
        rel = path.relative_to(root).as_posix()
        if not path.exists():
            log.warning("%s links to %s, which is not in the repository", page.file.src_path, rel)
            return m.group(0)
        if repo:
            return f"[{text}]({repo}/blob/main/{rel})"
        return text if text.startswith("`") else f"`{rel}`" if text == rel else f"{text} (`{rel}`)"

    return LINK.sub(rewrite, markdown)
