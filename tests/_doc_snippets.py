"""Reading the README's and the documentation pages' snippets, for the tests that run them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def doc_pages() -> list[Path]:
    """README, BENCHMARKS and every Markdown page of the site."""
    return [README, ROOT / "BENCHMARKS.md", *sorted(DOCS.rglob("*.md"))]


def code_blocks(text: str, lang: str) -> list[str]:
    """The fenced code blocks of ``text`` in language ``lang``."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def section(text: str, heading: str) -> str:
    """The text of the ``## heading`` section (up to the next heading of level 2)."""
    found = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert found, f"no section '## {heading}'"
    return found.group(1)


def shell_commands(block: str) -> list[str]:
    """The command lines of a shell block: continuations joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        words = shlex.split(line, comments=True)
        if words:
            lines.append(shlex.join(words))
    return lines


def sessionrec_commands(text: str) -> list[list[str]]:
    """Every ``sessionrec ...`` command of the bash blocks of ``text``, as arguments."""
    out = []
    for block in code_blocks(text, "bash"):
        for line in shell_commands(block):
            words = shlex.split(line)
            if words and words[0] == "sessionrec":
                out.append(words[1:])
    return out


def cli_tree() -> Any:
    """The click command tree of the ``sessionrec`` Typer app."""
    import typer

    from sessionrec.cli import app

    return typer.main.get_command(app)


def command_options(root: Any, args: list[str]) -> tuple[list[str], set[str]]:
    """The command path ``args`` names (verb, and sub-verb for groups) and its option names."""
    ctx = root.context_class(root, info_name="sessionrec")
    command, path = root, []
    for word in args:
        if not hasattr(command, "list_commands") or word.startswith("-"):
            break
        sub = command.get_command(ctx, word)
        assert sub is not None, f"sessionrec has no command {' '.join([*path, word])!r}"
        command, path = sub, [*path, word]
        ctx = command.context_class(command, info_name=word, parent=ctx)
    names = {"--help"}
    for p in command.get_params(ctx):
        if p.param_type_name == "option":
            names.update(p.opts)
            names.update(p.secondary_opts)
    return path, names
