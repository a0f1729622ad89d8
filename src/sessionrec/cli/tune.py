"""`sessionrec tune DATA_DIR --model NAME --trials N --metric mrr@20 --out DIR`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
from rich.table import Table

from sessionrec.cli._app import app, console
from sessionrec.cli._options import SeenMeasure
from sessionrec.cli._parsing import _GreedyCommand, _is_int
from sessionrec.errors import ConfigError


class _TuneCommand(_GreedyCommand):
    greedy: ClassVar[dict[str, Callable[[str], bool]]] = {"--cutoffs": _is_int}


@app.command(cls=_TuneCommand)
def tune(
    data_dir: Annotated[Path, typer.Argument(help="A PreparedData directory (with a valid part).")],
    model: Annotated[str, typer.Option("--model", "-m", help="A next-item model name.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The tuning folder; the same one again resumes."),
    ] = None,
    trials: Annotated[int, typer.Option(help="Trials this worker runs.")] = 20,
    metric: Annotated[str, typer.Option(help="recall@K | mrr@K | ndcg@K on valid.")] = "mrr@20",
    space: Annotated[
        Path | None, typer.Option(help="A TOML file overriding the model's shipped space.")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage shared by workers: postgresql://..., sqlite:///..., "
            "journal:FILE (default: sqlite in --out)."
        ),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default MODEL-METRIC).")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Start no trial after this many seconds.")
    ] = None,
    exclude_seen: SeenMeasure = False,
    cutoffs: Annotated[
        list[int] | None, typer.Option(help="Cutoffs of the test figures (default 10 20).")
    ] = None,
    seed: Annotated[int, typer.Option(help="The models' seed (and the sampler's).")] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto.")] = "auto",
    pruning: Annotated[
        bool, typer.Option(help="Median pruning on the per-epoch valid metric.")
    ] = True,
    final: Annotated[
        bool,
        typer.Option(
            help="Refit the best on train+valid and score test at the end (--no-final: search "
            "only, for extra workers)."
        ),
    ] = True,
    show_space: Annotated[
        bool, typer.Option(help="Print the search space as TOML and exit.")
    ] = False,
) -> None:
    """Search a model's parameters on valid (Optuna: TPE, median pruning), refit the best on
    train+valid and score test once; best.json and tune.html/.md/.json in --out."""
    from sessionrec.tuning import load_space
    from sessionrec.tuning import tune as run_tune

    if show_space:
        console.print(load_space(model, space).to_toml(), highlight=False, markup=False, end="")
        return
    if out is None:
        raise ConfigError("tune needs --out DIR (the study, the report and best.json go there)")

    def show(t: dict[str, Any]) -> None:
        value = "" if t["value"] is None else f"{metric} {t['value']:.4f}"
        best = (
            ""
            if t["best_value"] is None
            else f" (best {t['best_value']:.4f}, trial {t['best_number']})"
        )
        secs = "" if t["seconds"] is None else f", {t['seconds']:.1f} s"
        tag = " (the model's defaults)" if t.get("defaults") else ""
        console.print(
            f"trial {t['number']}{tag} {t['state']}: {value}{best}{secs}, epochs {t['epochs']}",
            highlight=False,
        )

    result = run_tune(
        model,
        data_dir,
        out,
        trials=trials,
        metric=metric,
        space=space,
        storage=storage,
        study=study,
        timeout=timeout,
        exclude_seen=exclude_seen,
        cutoffs=cutoffs or [10, 20],
        seed=seed,
        device=device,
        pruning=pruning,
        final=final,
        on_trial=show,
        progress=True,
    )
    if "test" not in result:
        states = result["study"]["states"]
        console.print(f"study {result['study']['name']}: {states}; search only, test not read")
        return
    console.print(
        f"best: trial {result['trial']}, valid {metric} {result['valid'][metric]:.4f}; "
        + ", ".join(f"{k}={v}" for k, v in result["params"].items()),
        highlight=False,
    )
    test = result["test"]
    table = Table(
        title=f"{model}: test, refit on train+valid ({test['predictions']:,} predictions)"
    )
    table.add_column("metric")
    table.add_column("test", justify="right")
    table.add_column("95 % interval", justify="right")
    for name, iv in test["intervals"].items():
        table.add_row(name, f"{iv['value']:.4f}", f"[{iv['low']:.4f}, {iv['high']:.4f}]")
    console.print(table)
    console.print(f"report: {out / 'tune.html'} (and tune.md, tune.json, best.json)")
