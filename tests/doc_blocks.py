"""The fenced code blocks of README.md and docs/*.md, their docs-check markers, and the commands
in them: what tests/test_doc_commands.py checks (its docstring has the conventions). Standard
library only: this module parses, it runs nothing."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------- markers
MARKER = re.compile(r"^\s*<!--\s*docs-check:(?P<body>.*?)-->\s*$")
MARKER_START = re.compile(r"<!--\s*docs-check\b")
NEEDS = ("gpu", "cluster", "download", "file")
KINDS = ("run", "needs", "fails", "skip")


@dataclass(frozen=True)
class Marker:
    """The markers right above a block, merged: ``run``, ``fails``, ``needs`` (a set of NEEDS),
    ``skip`` (its reason; "" if not skipped)."""

    run: bool = False
    fails: bool = False
    needs: frozenset[str] = frozenset()
    skip: str = ""
    error: str = ""  # a marker that could not be read: every command of the block fails with it

    def merged(self, body: str, where: str) -> Marker:
        words = body.replace(",", " ").split()
        kind, rest = (words[0].rstrip(":"), words[1:]) if words else ("", [])
        if kind not in KINDS:
            return self._bad(f"{where}: unknown docs-check marker {body.strip()!r}; allowed: {', '.join(KINDS)}")
        if kind == "needs":
            unknown = [w for w in rest if w not in NEEDS]
            if not rest or unknown:
                return self._bad(
                    f"{where}: docs-check: needs {' '.join(rest)!r}; allowed: needs one or more of {', '.join(NEEDS)}"
                )
            return Marker(self.run, self.fails, self.needs | frozenset(rest), self.skip, self.error)
        if kind == "skip":
            reason = body.strip()[len("skip") :].strip(" :-—")  # "skip REASON", "skip: REASON"
            if not reason:
                return self._bad(f"{where}: docs-check: skip needs a reason after it (why the block is not checked)")
            return Marker(self.run, self.fails, self.needs, reason, self.error)
        if rest:
            return self._bad(f"{where}: docs-check: {kind} takes nothing after it, got {' '.join(rest)!r}")
        return Marker(self.run or kind == "run", self.fails or kind == "fails", self.needs, self.skip, self.error)

    def _bad(self, message: str) -> Marker:
        return Marker(self.run, self.fails, self.needs, self.skip, self.error or message)


# ---------------------------------------------------------------------------------------- blocks
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
FILE_LINE = re.compile(r"^#\s*file:\s*(?P<path>\S+)\s*$")
SHELL_LANGS = {"", "bash", "sh", "shell", "zsh", "console", "shell-session", "sh-session"}
PYTHON_LANGS = {"python", "py", "python3"}
YAML_LANGS = {"yaml", "yml"}


@dataclass(frozen=True)
class Block:
    """A fenced code block: where it is, its language, its lines (number, text without the
    fence's indent), and the markers right above its fence."""

    doc: Path
    line: int  # the opening fence's line, 1-based
    lang: str
    lines: tuple[tuple[int, str], ...]
    marker: Marker

    @property
    def rel(self) -> str:
        return rel(self.doc)

    @property
    def id(self) -> str:
        return f"{self.rel}:{self.line}"

    @property
    def text(self) -> str:
        return "".join(f"{t}\n" for _, t in self.lines)

    @property
    def file(self) -> str | None:
        """``PATH`` of a first line ``# file: PATH``: the block is that file's content."""
        first = self.lines[0][1].strip() if self.lines else ""
        m = FILE_LINE.match(first)
        return m.group("path") if m else None


def rel(doc: Path) -> str:
    try:
        return doc.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(doc)


def doc_files(repo: Path = REPO) -> list[Path]:
    """README.md and every page under docs/ (found now: a new page is covered)."""
    return [p for p in [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))] if p.is_file()]


def markers_out_of_place(doc: Path) -> list[str]:
    """Every docs-check comment that is not a marker line right above a fence (or right above
    another such marker), or that cannot be read: 'file:line: why'."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    problems, in_fence = [], None
    for i, line in enumerate(lines):
        fence = FENCE.match(line)
        if in_fence is not None:
            if fence and _closes(fence, in_fence):
                in_fence = None
            continue
        if fence:
            in_fence = fence.group("fence")
            continue
        if not MARKER_START.search(line):
            continue
        where = f"{rel(doc)}:{i + 1}"
        m = MARKER.match(line)
        if m is None:
            problems.append(f"{where}: a docs-check marker is a line of its own: <!-- docs-check: KIND ... -->")
            continue
        error = Marker().merged(m.group("body"), where).error
        if error:
            problems.append(error)
        j = i + 1
        while j < len(lines) and MARKER.match(lines[j]):
            j += 1
        if j >= len(lines) or not FENCE.match(lines[j]):
            problems.append(f"{where}: a docs-check marker must be right above a fenced code block (no blank line)")
    return problems


def _closes(m: re.Match, opening: str) -> bool:
    fence = m.group("fence")
    return fence[0] == opening[0] and len(fence) >= len(opening) and not m.group("info").strip()


def blocks(doc: Path) -> list[Block]:
    """The fenced code blocks of ``doc`` (indented ones in list items too), with their markers."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence_line, indent, opening = i + 1, len(m.group("indent")), m.group("fence")
        info = m.group("info").strip()
        lang = info.split()[0].strip("{}.").lower() if info else ""
        marker, j = Marker(), i - 1
        while j >= 0 and MARKER.match(lines[j]):
            j -= 1
        for k in range(j + 1, i):  # top to bottom
            marker = marker.merged(MARKER.match(lines[k]).group("body"), f"{rel(doc)}:{k + 1}")
        body, i = [], i + 1
        while i < len(lines):
            close = FENCE.match(lines[i])
            if close and _closes(close, opening):
                break
            text = lines[i]
            body.append((i + 1, text[indent:] if text[:indent].strip() == "" else text.lstrip()))
            i += 1
        out.append(Block(doc, fence_line, lang, tuple(body), marker))
        i += 1
    return out


# -------------------------------------------------------------------------------------- commands
# How each of our commands may be spelled: the words that start it -> the command it is.
PROGRAMS = {
    ("prune-exp",): "prune-exp",
    ("prune-exp-report",): "prune-exp-report",
    ("python", "-m", "prune_exp"): "prune-exp",
    ("python", "-m", "prune_exp.app.run"): "prune-exp",
    ("python", "-m", "prune_exp.report.cli"): "prune-exp-report",
}
PREFIXES = (("uv", "run"),)  # dropped before a program: `uv run prune-exp` is `prune-exp`
ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PLACEHOLDER = re.compile(r"<(?=[^\s<>])[^<>\n]*[^\s<>]>|<[^\s<>]>")


@dataclass(frozen=True)
class Command:
    """One of our commands in a block: where it is, as written (continuations joined, prompt
    and comment stripped), and as the shell would pass it (env assignments, the program, its
    arguments). ``placeholders``: the ``<...>`` placeholders of each argument, by index."""

    block: Block
    line: int
    text: str
    env: dict[str, str]
    program: str
    args: tuple[str, ...]
    placeholders: dict[int, tuple[str, ...]] = field(default_factory=dict)
    output: tuple[str, ...] = ()  # in a transcript: the lines shown after it

    @property
    def id(self) -> str:
        return f"{self.block.rel}:{self.line}"

    @property
    def marker(self) -> Marker:
        return self.block.marker


def unquoted(line: str) -> Iterator[int]:
    """The positions of ``line``'s characters that are outside quotes and not escaped, as a
    POSIX shell reads them (a backslash escapes the next character, except inside '...')."""
    quote, i = None, 0
    while i < len(line):
        c = line[i]
        if quote is not None:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = None
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = c
        else:
            yield i
        i += 1


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment: a ``#`` that starts a word outside quotes."""
    for i in unquoted(line):
        if line[i] == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def split_commands(line: str) -> list[str]:
    """The simple commands of a shell line: split at ``&&``, ``||``, ``;``, ``|`` and ``&``
    outside quotes."""
    parts, start = [], 0
    for i in unquoted(line):
        if i >= start and line[i] in ";|&":
            parts.append(line[start:i])
            start = i + (2 if line[i : i + 2] in ("&&", "||") else 1)
    parts.append(line[start:])
    return [p.strip() for p in parts if p.strip()]


def logical_lines(block: Block) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """The block's command lines (line number, text, the output shown after it): backslash
    continuations joined, a ``$ `` prompt stripped, a comment stripped. Once a line starts with
    ``$ ``, the lines without it are output (of the command above them)."""
    transcript, lines, i = False, block.lines, 0
    while i < len(lines):
        number, text = lines[i]
        text = text.strip()
        if text.startswith("$ ") or text == "$":
            transcript, text = True, text[1:].strip()
        elif transcript or not text:
            i += 1
            continue
        text = strip_comment(text)
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            more = lines[i][1].strip()
            more = more[2:] if transcript and more.startswith("> ") else more
            text = text[:-1].rstrip() + " " + strip_comment(more)
        output = []
        while transcript and i + 1 < len(lines) and not lines[i + 1][1].strip().startswith("$ "):
            i += 1
            output.append(lines[i][1])
        yield number, text, tuple(output)
        i += 1


def commands(block: Block) -> list[Command]:
    """Our commands in a shell block (``prune-exp``, ``prune-exp-report``, however spelled);
    any other command (``uv sync``, ``pip install``, ``tensorboard``) is left out."""
    if block.lang not in SHELL_LANGS:
        return []
    out = []
    for number, line, output in logical_lines(block):
        for part in split_commands(line):
            cmd = command_of(block, number, part, output)
            if cmd is not None:
                out.append(cmd)
    return out


def command_of(block: Block, number: int, text: str, output: tuple[str, ...] = ()) -> Command | None:
    """``text`` as one of our commands, or None if it is not one."""
    found = {f"__PLACEHOLDER_{n}__": m.group(0) for n, m in enumerate(PLACEHOLDER.finditer(text))}
    masked = text
    for token, placeholder in found.items():
        masked = masked.replace(placeholder, token, 1)
    try:
        words = shlex.split(masked)
    except ValueError:  # an unclosed quote: not a command a shell would run either
        return None
    env = {}
    while words and ENV.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    for prefix in PREFIXES:
        if tuple(words[: len(prefix)]) == prefix:
            words = words[len(prefix) :]
    if words:
        words[0] = words[0].rsplit("/", 1)[-1]  # .venv/bin/prune-exp
        if words[0] in ("python3", "python"):
            words[0] = "python"
    for start, program in sorted(PROGRAMS.items(), key=lambda kv: -len(kv[0])):
        if tuple(words[: len(start)]) == start:
            args = words[len(start) :]
            placeholders = {}
            for n, arg in enumerate(args):
                names = tuple(found[t] for t in found if t in arg)
                for t in found:
                    arg = arg.replace(t, found[t])
                args[n] = arg
                if names:
                    placeholders[n] = names
            return Command(block, number, text, env, program, tuple(args), placeholders, output)
    return None


def all_blocks(repo: Path = REPO) -> list[Block]:
    return [b for doc in doc_files(repo) for b in blocks(doc)]
