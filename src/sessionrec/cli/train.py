"""`sessionrec train DATA_DIR --model NAME --out MODEL_DIR [--param key=value ...]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sessionrec.cli._app import app, console
from sessionrec.errors import ConfigError


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs → a dict; values are JSON where they parse (``224``, ``[224,224]``,
    ``true``, ``0.5``), plain strings otherwise (``loss=bpr-max``)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--param takes key=value, not {pair!r}")
        raw = raw.strip()
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            lowered = raw.lower()
            value = {"true": True, "false": False}.get(lowered, raw)
        out[key] = value
    return out


@app.command()
def train(
    data_dir: Annotated[
        Path, typer.Argument(help="A PreparedData directory (sessionrec prepare).")
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (gru4rec, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The model directory to write.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Hyperparameter key=value (JSON values); repeatable."),
    ] = None,
    fit_on: Annotated[
        str, typer.Option(help="train (valid metrics each epoch) | train+valid (final fit).")
    ] = "train",
    seed: Annotated[int, typer.Option(help="Seed of the weights, samples and dropout.")] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto.")] = "auto",
    valid_metric: Annotated[
        str, typer.Option(help="Valid metric for early stopping and the best epoch.")
    ] = "mrr@20",
    patience: Annotated[
        int | None, typer.Option(help="Stop after N epochs without a better valid metric.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint in --out.")] = False,
) -> None:
    """Train a model on a prepared dataset; writes the model dir with history and curve."""
    from sessionrec.prepare import PreparedData
    from sessionrec.training import train as run

    data = PreparedData(data_dir)
    m = run(
        model,
        data,
        out,
        params=parse_params(param),
        fit_on=fit_on,
        seed=seed,
        device=device,
        valid_metric=valid_metric,
        patience=patience,
        resume=resume,
        progress=True,
    )
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    last = history[-1] if history else {}
    console.print(
        f"trained {m.name} on {fit_on} of {data.path}: {len(history)} epoch(s), "
        f"{last.get('events_per_second', 0):,.0f} events/s → {out}",
        highlight=False,
    )
