"""`sessionrec experiment SPEC.toml --out DIR [--workers N] [--storage URL] [--dry-run]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sessionrec.cli._app import app, console, err_console


@app.command()
def experiment(
    spec: Annotated[Path, typer.Argument(help="A study spec (TOML; docs/experiments.md).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The study folder (cache + report).")],
    workers: Annotated[int, typer.Option(help="Local worker processes sharing the cells.")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL of the queue of cells (postgresql://...), shared with "
            "workers on other machines running the same command on a shared --out."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the cells and what is already done; run none.")
    ] = False,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto.")] = "cpu",
    n_boot: Annotated[
        int | None, typer.Option(help="Bootstrap replicates (the spec's by default).")
    ] = None,
) -> None:
    """Run a study: every session definition × model × setting × seed × slice of SPEC, each
    cell computed once (resumable), scored on its own and on the common targets; writes
    results.json, report.md and report.html into --out."""
    from sessionrec.study import experiment as run
    from sessionrec.study import load_spec, plan, status

    parsed = load_spec(spec)
    if dry_run:
        p = plan(parsed, out if out.is_dir() else None)
        rows = status(p, out)
        table = Table()
        for col in ("sessions", "slice", "model", "seed", "targets", "prepared", "model", "done"):
            table.add_column(col)
        yes = {True: "yes", False: "—"}
        for r in rows:
            table.add_row(r["sessions"], str(r["slice"]), r["model"], str(r["seed"]),
                          ", ".join(r["targets"]), yes[r["prepared"]], yes[r["model_done"]],
                          yes[r["done"]])  # fmt: skip
        console.print(table)
        console.print(f"{len(rows)} cells of {spec} ({sum(r['done'] for r in rows)} done)",
                      markup=False, highlight=False, soft_wrap=True)  # fmt: skip
        return

    def say(line: str) -> None:
        err_console.print(line, markup=False, highlight=False)

    result = run(parsed, out, workers=workers, storage=storage, device=device, n_boot=n_boot,
                 on_progress=say)  # fmt: skip
    shown = result["shown"][:2]
    for target in result["targets"]:
        table = Table(title=f"{target} targets: {result['targets'][target]}")
        for col in ("sessions", "model", "seed", "predictions", *shown):
            table.add_column(col, justify="left" if col in ("sessions", "model") else "right")
        for r in result["rows"]:
            if r["target"] != target:
                continue
            m = r["metrics"]
            slice_ = "" if r["slice"] is None else f" (slice {r['slice']})"
            table.add_row(
                r["sessions"] + slice_, r["model"], str(r["seed"]), f"{r['predictions']:,}",
                *(f"{m[n]['value']:.4f} [{m[n]['low']:.4f}, {m[n]['high']:.4f}]" for n in shown),
            )  # fmt: skip
        console.print(table)
    done = ", ".join(f"{v} {k}" for k, v in result["computed"].items()) or "nothing"
    console.print(f"computed {done}; report: {out / 'report.html'} (and report.md, results.json)",
                  markup=False, highlight=False)  # fmt: skip
