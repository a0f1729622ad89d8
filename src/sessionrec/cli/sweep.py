"""`sessionrec sweep DATA_DIR --model NAME --seeds 0 1 2 [--grid k=[a,b]] --out DIR`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
from rich.table import Table

from sessionrec.cli._app import app, console
from sessionrec.cli._options import SeenMeasure
from sessionrec.cli._parsing import _GreedyCommand, _is_int


class _SweepCommand(_GreedyCommand):
    greedy: ClassVar[dict[str, Callable[[str], bool]]] = {"--seeds": _is_int, "--cutoffs": _is_int}


@app.command(cls=_SweepCommand)
def sweep(
    data_dir: Annotated[Path, typer.Argument(help="A PreparedData directory.")],
    model: Annotated[str, typer.Option("--model", "-m", help="A next-item model name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the runs and sweep.* go.")],
    seeds: Annotated[list[int] | None, typer.Option(help="Seeds: --seeds 0 1 2 (default).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Hyperparameter key=value (JSON values); repeatable."),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            help="A parameter to vary, key=[v1,v2] (JSON list); repeatable: every combination "
            "runs over every seed."
        ),
    ] = None,
    fit_on: Annotated[
        str | None,
        typer.Option(
            help="train | train+valid (default: train+valid for one configuration, train for "
            "a --grid)."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="The part every run is scored on (default: test for one configuration, valid "
            "for a --grid)."
        ),
    ] = None,
    cutoffs: Annotated[list[int] | None, typer.Option(help="--cutoffs 10 20 (default 20).")] = None,
    exclude_seen: SeenMeasure = False,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto.")] = "auto",
    resume: Annotated[
        bool, typer.Option(help="Keep the runs of an interrupted sweep into --out.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace --out when it holds an earlier sessionrec sweep.")
    ] = False,
    select_on_test: Annotated[
        bool,
        typer.Option(
            "--select-on-test",
            help="Let a --grid be scored on test (tuning on test; every output is labelled "
            "test-selected).",
        ),
    ] = False,
) -> None:
    """Train and evaluate a configuration (or every one of a --grid) once per seed; mean, sd
    and a 95 % interval per configuration, in sweep.html/.md/.json."""
    from sessionrec.cli.train import parse_params
    from sessionrec.experiments import sweep as run_sweep

    def show(run: dict[str, Any]) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in run.items() if "@" in k)
        varied = ", ".join(f"{k}={v}" for k, v in run["params"].items())
        where = f"config {run['config']} ({varied}), " if varied else ""
        console.print(
            f"{where}seed {run['seed']}: {shown} ({run['fit_seconds']:.1f} s)", highlight=False
        )

    result = run_sweep(
        model,
        data_dir,
        out,
        seeds or [0, 1, 2],
        params=parse_params(param),
        grid=parse_params(grid) or None,
        fit_on=fit_on,
        split=split,
        cutoffs=cutoffs or [20],
        exclude_seen=exclude_seen,
        device=device,
        resume=resume,
        select_on_test=select_on_test,
        on_run=show,
        overwrite=overwrite,
    )
    configs = result["configs"]
    names = list(configs[0]["summary"])
    label = {"test-selected": " · TEST-SELECTED", "valid": " · compared on valid"}.get(
        result["selection"], ""
    )
    table = Table(
        title=f"{model} over {len(result['seeds'])} seeds · fit on {result['fit_on']}, "
        f"scored on {result['split']} of {data_dir}{label}"
    )
    table.add_column("config")
    for name in names:
        table.add_column(f"{name}: mean ± sd [95 %]", justify="right")
    for i, c in enumerate(configs):
        varied = ", ".join(f"{k}={v}" for k, v in c["params"].items())
        star = " (highest mean)" if result["best"] == i else ""
        table.add_row(
            f"{i} {varied}{star}".strip(),
            *(
                f"{c['summary'][n]['mean']:.4f} ± {c['summary'][n]['sd']:.4f} "
                f"[{c['summary'][n]['low']:.4f}, {c['summary'][n]['high']:.4f}]"
                for n in names
            ),
        )
    console.print(table)
    console.print(f"runs and report: {out / 'sweep.html'} (and sweep.md, sweep.png, sweep.json)")
