"""`sessionrec compare DATA_DIR MODEL_DIR MODEL_DIR ...`: one table, intervals, paired tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sessionrec.cli._app import app, console, err_console
from sessionrec.cli._options import SeenMeasure


@app.command()
def compare(
    data_dir: Annotated[Path, typer.Argument(help="The PreparedData the models were trained on.")],
    model_dirs: Annotated[
        list[Path], typer.Argument(help="Two or more saved next-item model directories.")
    ],
    split: Annotated[str, typer.Option(help="train | valid | test | train+valid")] = "test",
    metric: Annotated[
        list[str] | None,
        typer.Option(help="Metrics to compare (recall@K, mrr@K, ndcg@K); repeatable."),
    ] = None,
    exclude_seen: SeenMeasure = False,
    ties: Annotated[str, typer.Option(help="conservative | optimistic | average")] = (
        "conservative"
    ),
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the comparison as JSON here.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
    allow_other_data: Annotated[
        bool,
        typer.Option(
            help="Compare models trained on another prepared dataset than DATA_DIR "
            "(refused otherwise; recorded in the JSON)."
        ),
    ] = False,
) -> None:
    """Compare models on the same predictions: each metric with its 95 % interval, and each
    model against the first by a paired session bootstrap (difference, interval, p-value)."""
    from sessionrec import registry
    from sessionrec._io import check_output_file, write_json
    from sessionrec.cli.evaluate import SPLITS
    from sessionrec.errors import ConfigError, UnknownNameError
    from sessionrec.evaluation import (
        bootstrap_interval,
        evaluate,
        paired_difference,
        seen_phrase,
    )
    from sessionrec.models import load_model
    from sessionrec.prepare import PreparedData
    from sessionrec.prepare.data import check_trained_on, check_vocabulary

    if split not in SPLITS:
        raise UnknownNameError("split", split, list(SPLITS))
    if json_path is not None:
        check_output_file(json_path)  # before any work
    if len(model_dirs) < 2:
        raise ConfigError("compare takes two or more model directories")
    metrics = metric or ["recall@20", "mrr@20"]
    cutoffs = sorted({int(m.partition("@")[2]) for m in metrics if m.partition("@")[2].isdigit()})
    data = PreparedData(data_dir)
    part = data.part(split)
    rows: list[dict[str, Any]] = []
    results = []
    models = []
    for path in model_dirs:  # every model loaded and checked before any is evaluated
        if registry.folder_task(path) == registry.RATING:
            raise ConfigError(f"{path} is a rating model: compare ranks next-item models")
        model = load_model(path, device=device)
        check = check_trained_on(
            model.trained_on, data, model=path, allow_other_data=allow_other_data
        )
        check_vocabulary(model, data, path)
        models.append((path, model, check))
    for path, model, check in models:
        fit_on = _fit_part(path)
        res = evaluate(
            model,
            part,
            cutoffs=cutoffs or (20,),
            ties=ties,
            exclude_seen=exclude_seen,
            allow_other_data=allow_other_data,
        )
        results.append(res)
        for w in res.warnings:
            err_console.print(f"warning: {path}: {w}", markup=False, highlight=False)
        row: dict[str, Any] = {
            "model": str(path),
            "name": model.name,
            "fit_on": fit_on,
            "predictions": res.predictions,
            "data_check": check,
            "intervals": bootstrap_interval(res, part, metrics, n_boot=n_boot, seed=seed),
        }
        if len(results) > 1:
            row["vs_first"] = {
                m: paired_difference(res, results[0], part, m, n_boot=n_boot, seed=seed)
                for m in metrics
            }
        rows.append(row)
    title = (
        f"{split} of {data_dir} · {results[0].predictions:,} predictions over "
        f"{part.n_sessions:,} sessions · ties {ties} · "
        f"{seen_phrase(results[0].protocol)}"
    )
    parts = {row["fit_on"] for row in rows} - {"unknown"}
    table = Table(title=title)
    table.add_column("model")
    table.add_column("fit on")
    for m in metrics:
        table.add_column(f"{m} [95 %]", justify="right")
        table.add_column(f"Δ {m} vs first (p)", justify="right")

    def p_text(d: dict[str, Any]) -> str:
        return f"p < {d['p_value']:.3g}" if d.get("p_value_is_bound") else f"p {d['p_value']:.3f}"

    for row in rows:
        folder = Path(row["model"]).name
        cells = [
            row["name"] if folder == row["name"] else f"{row['name']} ({folder})",
            row["fit_on"],
        ]
        for m in metrics:
            iv = row["intervals"][m]
            cells.append(f"{iv['value']:.4f} [{iv['low']:.4f}, {iv['high']:.4f}]")
            d = row.get("vs_first", {}).get(m)
            cells.append(
                f"{d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] ({p_text(d)})"
                if d
                else "—"
            )
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"intervals and p-values from {n_boot:,} bootstrap resamples of the sessions, the same "
        "sessions for every model (paired); p is two-sided, for no difference",
        highlight=False,
    )
    if len(parts) > 1:
        err_console.print(
            "warning: these models were fit on different parts "
            f"({', '.join(sorted(parts))}): a model fit on train+valid saw more data, so the "
            "differences mix the data with the method; train them on the same --fit-on",
            highlight=False,
            style="yellow",
        )
    if json_path is not None:
        write_json(
            json_path,
            {
                "data": str(data_dir),
                "split": split,
                "ties": ties,
                "exclude_seen": exclude_seen,
                "n_boot": n_boot,
                "seed": seed,
                "allow_other_data": allow_other_data,
                "models": rows,
            },
        )
        console.print(f"results: {json_path}")


def _fit_part(model_dir: Path) -> str:
    """The part a model was fit on, from the data_meta.json `sessionrec train` writes."""
    from sessionrec.prepare.data import read_trained_on

    trained_on = read_trained_on(model_dir)
    return str(trained_on.get("fit_on", "unknown")) if trained_on else "unknown"
