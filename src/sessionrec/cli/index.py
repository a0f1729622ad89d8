"""`sessionrec index MODEL_DIR [--kind hnsw]`: build an item index and measure it against exact."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sessionrec.cli._app import app, console


@app.command()
def index(
    model_dir: Annotated[
        Path, typer.Argument(help="A saved two-tower, bpr or als model directory.")
    ],
    kind: Annotated[str, typer.Option(help="hnsw (faiss; the ann extra) | exact.")] = "hnsw",
    out: Annotated[
        Path | None, typer.Option(help="The index directory to write (default MODEL_DIR/index).")
    ] = None,
    m: Annotated[int, typer.Option(help="hnsw: links per node.")] = 32,
    ef_construction: Annotated[int, typer.Option(help="hnsw: candidate list when building.")] = 200,
    ef_search: Annotated[int, typer.Option(help="hnsw: candidate list when searching.")] = 128,
    data: Annotated[
        Path | None,
        typer.Option(
            help="A PreparedData: measure on its --split prefixes (default: every item alone "
            "as a one-item session)."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Part of --data whose prefixes are queries.")] = "test",
    queries: Annotated[int, typer.Option(help="At most this many query prefixes.")] = 2000,
    k: Annotated[
        list[int] | None, typer.Option("--k", help="Recall@k against exact top-k (10 100).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the query sample.")] = 0,
    allow_other_data: Annotated[
        bool, typer.Option(help="Measure on --data although the model was trained on other data.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace the index folder when sessionrec wrote it.")
    ] = False,
) -> None:
    """Build an item index for a model and report its recall against exact top-k."""
    import torch

    from sessionrec._io import check_output
    from sessionrec.ann import (
        INDEXES,
        ExactIndex,
        build_index,
        index_recall,
        item_vectors,
        prefix_sessions,
        session_queries,
    )
    from sessionrec.errors import ConfigError
    from sessionrec.models import load_model

    if kind not in INDEXES:
        raise ConfigError(f"--kind must be one of {', '.join(INDEXES)}, not {kind!r}")
    for name, value in (("--queries", queries), ("--m", m), ("--ef-construction", ef_construction),
                        ("--ef-search", ef_search), *(("--k", kk) for kk in k or [])):  # fmt: skip
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, not {value}")
    target = out or model_dir / "index"
    model = load_model(model_dir, device="cpu")
    check_output(target, overwrite=overwrite, verb="index")
    vectors = item_vectors(model)  # a clear error for models without vectors
    params = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search}
    built = build_index(model, kind, **(params if kind == "hnsw" else {}))
    exact = ExactIndex(vectors)
    if data is not None:
        from sessionrec.prepare import PreparedData
        from sessionrec.prepare.data import check_trained_on, check_vocabulary

        prepared = PreparedData(data)
        check_trained_on(
            model.trained_on, prepared, model=model_dir, allow_other_data=allow_other_data
        )
        check_vocabulary(model, prepared, model_dir)
        sessions = prefix_sessions(prepared.part(split), queries, seed)
        source = f"{len(sessions):,} prefixes of {split} of {data}"
    else:
        pick = torch.arange(model.n_items)
        if model.n_items > queries:
            rng = torch.Generator().manual_seed(seed)
            pick = torch.randperm(model.n_items, generator=rng)[:queries].sort().values
        sessions = [[i] for i in pick.tolist()]
        source = f"{len(sessions):,} one-item sessions"
    q = session_queries(model, sessions).cpu()
    ks = sorted(set(k or [10, 100]))
    recall = {f"recall@{kk}": index_recall(built, exact, q, kk) for kk in ks}
    speed = {}
    for name, ix in (("exact", exact), (kind, built)):
        t0 = time.perf_counter()
        ix.search(q, max(ks))
        speed[name] = len(q) / max(time.perf_counter() - t0, 1e-9)
    built.save(
        target,
        overwrite=overwrite,
        model=str(model_dir),
        queries=source,
        **recall,
        queries_per_second={kk: round(v, 1) for kk, v in speed.items()},
    )
    table = Table(
        title=f"{kind} index of {model.n_items:,} {model.name} item vectors (dim {built.dim})"
    )
    for col in ("", *recall, f"queries/s (top {max(ks)})"):
        table.add_column(col, justify="right")
    table.add_row("exact", *("1.0000" for _ in recall), f"{speed['exact']:,.0f}")
    if kind != "exact":
        table.add_row(kind, *(f"{v:.4f}" for v in recall.values()), f"{speed[kind]:,.0f}")
    console.print(table)
    console.print(
        f"queries: {source}; built in {built.build_seconds:.2f} s → {target}", highlight=False
    )
