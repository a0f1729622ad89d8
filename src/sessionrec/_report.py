"""Reports as one list of blocks, rendered as Markdown or as self-contained HTML, so both
always say the same thing (the exploration report, the sweep report)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    align_left: int = 1  # how many leading columns are text (left-aligned)


@dataclass(frozen=True)
class Image:
    name: str
    alt: str


Block = Heading | Para | Table | Image


def blocks_markdown(blocks: list[Block], figures: dict[str, bytes], images: str = "inline") -> str:
    """Markdown; ``images`` ``"files"`` links ``NAME.png``, ``"inline"`` embeds data URIs."""
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [b.text, ""]
        elif isinstance(b, Table):
            lines.append("| " + " | ".join(b.headers) + " |")
            lines.append(
                "| "
                + " | ".join("---" if i < b.align_left else "---:" for i in range(len(b.headers)))
                + " |"
            )
            lines += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in b.rows]
            lines.append("")
        elif isinstance(b, Image):
            if b.name not in figures:
                continue
            src = f"{b.name}.png" if images == "files" else data_uri(figures[b.name])
            lines += [f"![{b.alt}]({src})", ""]
    return "\n".join(lines)


_MD_SPECIAL = str.maketrans(
    {"|": "\\|", "[": "\\[", "]": "\\]", "`": "\\`", "\\": "\\\\", "\r": " ", "\n": " "}
)


def md_cell(text: str) -> str:
    """A table cell of data (a title) as Markdown that shows it as text, as ``blocks_html``
    does: no raw HTML (``<`` ``>`` ``&`` as entities), no links or images (brackets
    escaped), no code spans, one line, and ``|`` cannot end the cell."""
    return html.escape(text, quote=False).translate(_MD_SPECIAL)


_CSS = """
.sr-report { font-family: system-ui, -apple-system, sans-serif; max-width: 1150px;
  margin: 0 auto; color: #222; line-height: 1.45; }
.sr-report h1 { font-size: 1.6em; } .sr-report h2 { font-size: 1.25em; margin-top: 1.6em;
  border-bottom: 1px solid #ddd; }
.sr-report table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
.sr-report th, .sr-report td { border: 1px solid #ddd; padding: 3px 9px; }
.sr-report th { background: #f3f3f3; } .sr-report td.num { text-align: right;
  font-variant-numeric: tabular-nums; }
.sr-report img { max-width: 100%; display: block; margin: 0.5em 0; }
"""


def blocks_html(
    blocks: list[Block], figures: dict[str, bytes], title: str, full_page: bool = True
) -> str:
    """One self-contained HTML document (or a ``<div>`` for a notebook), images as base64."""
    parts = (
        ['<div class="sr-report">']
        if full_page
        else [f"<style>{_CSS}</style>", '<div class="sr-report">']
    )
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append(f"<p>{html.escape(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            body = "".join(
                "<tr>"
                + "".join(
                    f"<td{'' if i < b.align_left else ' class=num'}>{html.escape(c)}</td>"
                    for i, c in enumerate(r)
                )
                + "</tr>"
                for r in b.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Image) and b.name in figures:
            parts.append(
                f'<img alt="{html.escape(b.alt)}" title="{html.escape(b.alt)}" '
                f'src="{data_uri(figures[b.name])}">'
            )
    parts.append("</div>")
    body = "\n".join(parts)
    if not full_page:
        return body
    title = html.escape(title)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>\n<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
