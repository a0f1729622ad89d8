"""`sessionrec crossval SOURCE --model svd --folds 5 --seed 1 --json FILE` (rating models)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sessionrec.cli import _options as o
from sessionrec.cli._app import app, console
from sessionrec.cli.train import parse_params


@app.command()
def crossval(
    source: o.Source,
    model: Annotated[str, typer.Option(help="baseline | svd | svdpp | autorec")] = "svd",
    folds: Annotated[int, typer.Option(min=2, help="Number of folds (kfold).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment / random split.")] = 0,
    protocol: Annotated[
        str,
        typer.Option(
            help="kfold | random (one random split, --test-fraction held out: the seed's 70/30)"
            " | time (the latest --test-fraction of ratings held out)."
        ),
    ] = "kfold",
    test_fraction: Annotated[
        float, typer.Option(help="Held-out share for the random and time protocols.")
    ] = 0.3,
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
    """Cross-validate a rating model on raw ratings (k-fold, random or time split): RMSE, MAE, FCP."""
    from sessionrec._io import check_output_file, write_json
    from sessionrec.rating import Ratings, rating_model_class
    from sessionrec.rating import crossval as run_crossval

    if json_out is not None:
        check_output_file(json_out)  # before any work
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
        f"{model}, "
        + (f"{folds} folds" if protocol == "kfold" else f"{protocol} split {test_fraction:g}")
        + f", seed {seed}"
    )

    def show(row: dict[str, Any]) -> None:
        console.print(
            f"fold {row['fold']}: rmse {row['rmse']:.4f}  mae {row['mae']:.4f}  "
            f"fcp {row['fcp']:.4f}  ({row['fit_seconds']:.1f} s)"
        )

    result = run_crossval(
        data,
        model,
        params,
        folds=folds,
        seed=seed,
        device=device,
        on_fold=show,
        protocol=protocol,
        test_fraction=test_fraction,
    )
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
