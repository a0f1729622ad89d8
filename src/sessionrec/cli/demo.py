"""`sessionrec demo`: the whole job on MovieLens-100K, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sessionrec.cli._app import app, console


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where results go.")] = Path("demo-out"),
    source: Annotated[str, typer.Option(help="Dataset name or path.")] = "ml-100k",
) -> None:
    """Fetch MovieLens-100K, explore it, prepare sessions, and print the key numbers."""
    from sessionrec.cli.explore import print_exploration
    from sessionrec.cli.prepare import print_prepared
    from sessionrec.datasets import load
    from sessionrec.explore import explore
    from sessionrec.prepare import PrepareConfig, PreparedData, prepare

    console.rule("1. data")
    ds = load(source)
    console.print(f"{ds.name}: {ds.events.height:,} events from {', '.join(map(str, ds.files))}")
    if ds.info.get("source_used"):
        console.print(f"source used: {ds.info['source_used']}")
    console.rule("2. explore")
    ex = explore(ds)
    ex.save(out / "explore")
    print_exploration(ex)
    console.print(f"report: {out / 'explore' / 'report.html'}")
    console.rule("3. prepare")
    cfg = PrepareConfig(session="1h", split="time", test_days=21, valid_days=21)
    data = prepare(ds, out / "prepared", cfg)
    assert isinstance(data, PreparedData)
    print_prepared(data)
