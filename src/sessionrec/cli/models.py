"""`sessionrec models`: every model with its tasks, parameters, types and defaults."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sessionrec.cli._app import app, console


@app.command()
def models(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the README's table (Markdown) instead.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
) -> None:
    """List every model (next-item and rating) with its tasks and parameters (--param name=value)."""
    from sessionrec.catalog import model_catalog, models_markdown

    if markdown:
        typer.echo(models_markdown(), nl=False)
        return
    catalog = model_catalog()
    if json_out:
        import json

        typer.echo(json.dumps(catalog, indent=2))
        return
    table = Table(title="models (sessionrec train DATA --model NAME --param name=value ...)")
    for col in ("model", "tasks", "parameter", "type", "default"):
        table.add_column(col)
    for m in catalog:
        params = m["parameters"] or [{"name": "—", "type": "", "default": ""}]
        for i, p in enumerate(params):
            first = i == 0
            table.add_row(
                m["model"] if first else "",
                ", ".join(m["tasks"]) if first else "",
                p["name"],
                p["type"],
                p["default"],
                end_section=i == len(params) - 1,
            )
    console.print(table)
