"""`sessionrec crossval SOURCE --model svd --folds 5 --seed 1 --json FILE` (rating models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sessionrec.cli import _options as o
from sessionrec.cli._app import app, console
from sessionrec.errors import ConfigError


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` → dict; values parsed as JSON when they parse, else kept as strings."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects key=value, not {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command()
def crossval(
    source: o.Source,
    model: Annotated[str, typer.Option(help="baseline | svd | autorec")] = "svd",
    folds: Annotated[int, typer.Option(min=2, help="Number of folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment.")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Model parameter key=value.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write per-fold and mean metrics here.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    user_column: o.UserColumn = None,
    item_column: o.ItemColumn = None,
    time_column: o.TimeColumn = None,
    rating_column: o.RatingColumn = None,
    time_unit: o.TimeUnit = None,
    separator: o.Separator = None,
) -> None:
    """k-fold cross-validation of a rating model on raw ratings: RMSE, MAE, FCP per fold."""
    from sessionrec._io import write_json
    from sessionrec.rating import Ratings, rating_model_class
    from sessionrec.rating import crossval as run_crossval

    params = parse_params(param)
    rating_model_class(model).from_params(params)  # fail on a bad name/parameter before loading
    ds = o.load_source(
        source,
        user_column=user_column,
        item_column=item_column,
        time_column=time_column,
        rating_column=rating_column,
        time_unit=time_unit,
        separator=separator,
    )
    data = Ratings.from_dataset(ds)
    console.print(
        f"{len(data):,} ratings, {data.n_users:,} users, {data.n_items:,} items; "
        f"{model}, {folds} folds, seed {seed}"
    )

    def show(row: dict[str, Any]) -> None:
        console.print(
            f"fold {row['fold']}: rmse {row['rmse']:.4f}  mae {row['mae']:.4f}  "
            f"fcp {row['fcp']:.4f}  ({row['fit_seconds']:.1f} s)"
        )

    result = run_crossval(data, model, params, folds=folds, seed=seed, device=device, on_fold=show)
    result["source"] = str(source)
    table = Table("", "rmse", "mae", "fcp", "fit s")
    for row in result["folds"]:
        table.add_row(
            f"fold {row['fold']}",
            *(f"{row[k]:.4f}" for k in ("rmse", "mae", "fcp")),
            f"{row['fit_seconds']:.1f}",
        )
    m, s = result["mean"], result["std"]
    table.add_row(
        "mean ± std",
        *(f"{m[k]:.4f} ± {s[k]:.4f}" for k in ("rmse", "mae", "fcp")),
        f"{m['fit_seconds']:.1f}",
    )
    console.print(table)
    if json_out is not None:
        write_json(json_out, result)
        console.print(f"wrote {json_out}")
