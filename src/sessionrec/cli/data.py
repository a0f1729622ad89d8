"""`sessionrec data list|fetch|import`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from sessionrec.cli._app import app, console
from sessionrec.cli._options import SeenMeasure
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


@data_app.command("synth")
def synth(
    preset: str = typer.Argument(..., help="ecommerce | media | broad (sessionrec.synthetic)."),
    out: Path = typer.Option(..., "--out", "-o", help="A new or empty folder for the log."),
    sessions: int | None = typer.Option(None, help="Number of sessions (preset's by default)."),
    seed: int = typer.Option(0, help="Everything is drawn from this seed."),
    overwrite: bool = typer.Option(False, help="Replace --out when an earlier synth wrote it."),
) -> None:
    """Generate a synthetic log with a known next-item process (log.parquet, process.npz,
    spec.json); `data ceiling` then gives its Bayes-optimal figures."""
    from sessionrec._io import check_output
    from sessionrec.synthetic import generate

    check_output(out, overwrite=overwrite, verb="data synth")  # before generating
    log = generate(preset, seed=seed, **({"n_sessions": sessions} if sessions else {}))
    log.save(out, overwrite=overwrite)
    spec = log.spec
    console.print(
        f"{preset}: {log.events.height:,} events in {spec.n_sessions:,} sessions over "
        f"{spec.n_items:,} items → {out / 'log.parquet'}",
        markup=False,
        highlight=False,
    )
    days = max(1, spec.days // 10)
    console.print(
        f"next: sessionrec prepare {out / 'log.parquet'} --out DATA --session-column session_id "
        f"--min-item-support 1 --split time --test-days {days} --valid-days {days}",
        markup=False,
        highlight=False,
    )


@data_app.command("ceiling")
def ceiling(
    synth_dir: Path = typer.Argument(..., help="A folder written by `data synth`."),
    data_dir: Path = typer.Argument(..., help="A PreparedData of its log.parquet."),
    split: str = typer.Option("test", help="The part to score."),
    exclude_seen: SeenMeasure = False,
) -> None:
    """The Bayes-optimal (oracle) Recall/MRR@5/10/20 of a synthetic log's prepared part."""
    from sessionrec.synthetic import SyntheticLog
    from sessionrec.synthetic import ceiling as oracle_ceiling

    res = oracle_ceiling(SyntheticLog.load(synth_dir), data_dir, split, exclude_seen=exclude_seen)
    table = Table(title=f"ceiling: the oracle on {split} of {data_dir} ({res.predictions:,} "
                  "predictions, full ranking)")  # fmt: skip
    for col in ("k", "recall", "mrr", "ndcg"):
        table.add_column(col, justify="right")
    for k in res.protocol["cutoffs"]:
        m = res.metrics
        table.add_row(str(k), f"{m[f'recall@{k}']:.4f}", f"{m[f'mrr@{k}']:.4f}",
                      f"{m[f'ndcg@{k}']:.4f}")  # fmt: skip
    console.print(table)
