"""MkDocs hooks: the generated references of the documentation site.

A page holding one of the markers below gets it replaced at build time, so these pages never
drift from the code:

- ``<!-- cli-reference -->``: every ``sessionrec`` command, from the Typer app's own click
  command tree (usage, help, arguments and options with their types and defaults: what
  ``sessionrec VERB --help`` prints);
- ``<!-- http-reference -->``: every route of ``sessionrec serve``, from the FastAPI app's
  OpenAPI schema (built in-process around a tiny model; nothing is served), which the site
  also serves as ``reference/openapi.json``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

CLI_MARKER = "<!-- cli-reference -->"
HTTP_MARKER = "<!-- http-reference -->"
_schema: dict[str, Any] | None = None


# -- the command line ---------------------------------------------------------------------------
def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped, and brackets escaped so that help text
    such as ``[default: 5]`` never reads as a Markdown reference link."""
    text = " ".join(text.split())
    for ch in "|[]":
        text = text.replace(ch, "\\" + ch)
    return text


# Typer ships its own copy of click, so parameters and commands are read through click's
# public methods only: each parameter's help record is the line ``--help`` prints for it.
def _param_rows(command: Any, ctx: Any) -> list[str]:
    rows = []
    for p in command.get_params(ctx):
        if p.hidden or p.name == "help":
            continue
        record = p.get_help_record(ctx)
        if record is None:  # an argument without help text
            record = (" ".join(p.get_usage_pieces(ctx)), "")
        names, help_text = record
        kind = p.param_type_name + ("" if p.required else ", optional")
        rows.append(f"| `{names}` | {kind} | {_cell(help_text)} |")
    return rows


def _command_markdown(command: Any, path: list[str], parent: Any) -> list[str]:
    ctx = command.context_class(command, info_name=path[-1], parent=parent)
    level = "#" * min(len(path) + 1, 4)
    out = [f"{level} `{' '.join(path)}`", ""]
    if command.help:
        out += [command.help.strip(), ""]
    usage = command.collect_usage_pieces(ctx)
    out += ["```", " ".join([*path, *usage]), "```", ""]
    rows = _param_rows(command, ctx)
    if rows:
        out += ["| argument / option | kind | what it does |", "| --- | --- | --- |"]
        out += [*rows, ""]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                out += _command_markdown(sub, [*path, name], ctx)
    return out


def cli_reference() -> str:
    """Markdown for every ``sessionrec`` command, read from the click command tree."""
    import typer

    from sessionrec.cli import app

    root = typer.main.get_command(app)
    return "\n".join(_command_markdown(root, ["sessionrec"], None))


# -- the HTTP API -------------------------------------------------------------------------------
def openapi_schema() -> dict[str, Any]:
    """The service's OpenAPI schema: the app built around a tiny pop model (nothing served)."""
    global _schema
    if _schema is None:
        import numpy as np
        import polars as pl

        from sessionrec.models import create
        from sessionrec.prepare import SessionData
        from sessionrec.serving import ServeConfig, build_app

        with tempfile.TemporaryDirectory() as tmp:
            items = np.array([0, 1, 2, 0, 2, 1], dtype=np.int64)
            data = SessionData(
                items=items,
                offsets=np.array([0, 3, 6], dtype=np.int64),
                session_ids=np.arange(2, dtype=np.int64),
                timestamps=np.arange(len(items), dtype=np.int64) * 1_000_000,
                target=np.ones(len(items), dtype=bool),
                n_items=3,
            )
            model = create("pop").fit(data)
            model.items = pl.DataFrame(
                {
                    "item_idx": [0, 1, 2],
                    "item_id": [1, 2, 3],
                    "title": ["Toy Story (1995)", "GoldenEye (1995)", "Four Rooms (1995)"],
                }
            )
            model.save(Path(tmp) / "pop")
            config = ServeConfig(
                model_dirs=(str(Path(tmp) / "pop"),), state="memory", admin_token="x"
            )
            _schema = build_app(config).openapi()
    return _schema


def _resolve(schema: dict[str, Any], node: Any) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return schema["components"]["schemas"][name]
    return node


def _type(schema: dict[str, Any], node: dict[str, Any]) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in node:
        return " or ".join(_type(schema, n) for n in node["anyOf"])
    if node.get("type") == "array":
        return f"array of {_type(schema, node.get('items', {}))}"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = str(node.get("type", "any"))
    limits = [
        f"{word} {node[key]}"
        for key, word in (
            ("minimum", "≥"),
            ("maximum", "≤"),
            ("exclusiveMinimum", ">"),
            ("minLength", "length ≥"),
            ("maxLength", "length ≤"),
        )
        if key in node
    ]
    return kind + (f" ({', '.join(limits)})" if limits else "")


def _fields_table(schema: dict[str, Any], node: dict[str, Any]) -> list[str]:
    props = node.get("properties", {})
    if not props:
        return []
    required = set(node.get("required", []))
    rows = [
        "| field | type | required | default | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, prop in props.items():
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        rows.append(
            f"| `{name}` | {_type(schema, prop)} | {'yes' if name in required else ''} | "
            f"{default} | {_cell(prop.get('description', ''))} |"
        )
    return rows


def http_reference() -> str:
    """Markdown for every route of the service, read from its OpenAPI schema."""
    schema = openapi_schema()
    info = schema["info"]
    out = [f"`{info['title']}` {info['version']}: {info.get('summary', '')}", ""]
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            out += [f"## `{method.upper()} {path}`", ""]
            if op.get("summary"):
                out += [f"**{op['summary']}**", ""]
            if op.get("description"):
                out += [op["description"].strip(), ""]
            params = op.get("parameters", [])
            if params:
                out += ["| parameter | in | type | required | default | description |"]
                out += ["| --- | --- | --- | --- | --- | --- |"]
                for p in params:
                    kind = p.get("schema", {})
                    default = f"`{json.dumps(kind['default'])}`" if "default" in kind else ""
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {_type(schema, kind)} | "
                        f"{'yes' if p.get('required') else ''} | {default} | "
                        f"{_cell(p.get('description', ''))} |"
                    )
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                out += [f"Request body ({media}): {_type(schema, content.get('schema', {}))}", ""]
            responses = op.get("responses", {})
            if responses:
                out += ["| status | meaning | body |", "| --- | --- | --- |"]
                for status, resp in responses.items():
                    media = resp.get("content", {})
                    bodies = ", ".join(
                        _type(schema, c.get("schema", {})) for c in media.values() if c
                    )
                    out.append(f"| {status} | {_cell(resp.get('description', ''))} | {bodies} |")
                out.append("")
    out += ["## Schemas", ""]
    for name, node in schema.get("components", {}).get("schemas", {}).items():
        out += [f"### {name}", ""]
        if node.get("description"):
            out += [_cell(node["description"]), ""]
        table = _fields_table(schema, node)
        out += [*table, ""] if table else [f"Type: {_type(schema, node)}", ""]
    return "\n".join(out)


# -- hooks --------------------------------------------------------------------------------------
def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if HTTP_MARKER in markdown:
        markdown = markdown.replace(HTTP_MARKER, http_reference())
    return markdown


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(
        File.generated(
            config, "reference/openapi.json", content=json.dumps(openapi_schema(), indent=2)
        )
    )
    return files
