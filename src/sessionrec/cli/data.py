"""`sessionrec data list|fetch|import`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from sessionrec.cli._app import app, console
from sessionrec.datasets import registry
from sessionrec.datasets.fetch import read_source

data_app = typer.Typer(help="Known datasets: list, fetch into the cache, import a local copy.")
app.add_typer(data_app, name="data")


@data_app.command("list")
def list_() -> None:
    """Show the known datasets and which are cached."""
    table = Table(title=f"datasets (cache: {registry.home() / 'datasets'})")
    for col in ("name", "cached", "description"):
        table.add_column(col)
    for name, spec in registry.DATASETS.items():
        cached = ""
        if registry.is_cached(name):
            kind = read_source(registry.cache_dir(name)).get("kind", "")
            cached = f"yes ({kind})" if kind else "yes"
        table.add_row(name, cached, spec.description)
    console.print(table)


@data_app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="A dataset name from `sessionrec data list`."),
) -> None:
    """Download a dataset's official archive into the cache (sha256-verified, atomic)."""
    from sessionrec.datasets.fetch import fetch as do_fetch

    path = do_fetch(name)
    console.print(f"{name}: {path}")
    used = read_source(path).get("source_used")
    if used:
        console.print(f"source used: {used}")


@data_app.command("import")
def import_(
    name: str = typer.Argument(..., help="A dataset name from `sessionrec data list`."),
    path: Path = typer.Argument(..., help="An archive (.zip) or folder you already have."),
) -> None:
    """Put a local archive or folder of a known dataset into the cache."""
    from sessionrec.datasets.fetch import import_dataset

    out = import_dataset(name, path)
    console.print(f"{name}: {out}")
