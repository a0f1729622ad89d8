"""`sessionrec train DATA_DIR --model NAME --out MODEL_DIR [--param-file F] [--param k=v ...]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sessionrec.cli._app import app, console, err_console
from sessionrec.cli._options import SeenMeasure
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
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="Model name (gru4rec, ...); `sessionrec models` lists them all."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The model directory to write.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Hyperparameter key=value (JSON values); repeatable. `sessionrec models` lists "
            "every model's parameters, types and defaults.",
        ),
    ] = None,
    param_file: Annotated[
        Path | None,
        typer.Option(
            "--param-file",
            help="gru4rec: an official GRU4Rec parameter file (paramfiles/*.py, parsed, never "
            "run), trained with the official code's semantics; --param overrides single values.",
        ),
    ] = None,
    fit_on: Annotated[
        str, typer.Option(help="train (valid metrics each epoch) | train+valid (final fit).")
    ] = "train",
    seed: Annotated[int, typer.Option(help="Seed of the weights, samples and dropout.")] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto.")] = "auto",
    valid_metric: Annotated[
        str, typer.Option(help="Valid metric for early stopping and the best epoch.")
    ] = "mrr@20",
    exclude_seen: SeenMeasure = False,
    patience: Annotated[
        str,
        typer.Option(
            help="Stop after N validations without a better valid metric and keep the best "
            "epoch. auto (default): 3 with --fit-on train and a non-empty valid part, else "
            "the configured epochs; none: never stop early."
        ),
    ] = "auto",
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue from the checkpoint in --out (same data, same parameters; a larger "
            "-p n_epochs=N extends a finished run)."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace --out when it is a model folder sessionrec wrote.")
    ] = False,
    valid_every: Annotated[
        int | None,
        typer.Option(
            help="With --fit-on train, score valid after every N-th epoch and the last "
            "(default: about 10 times per run; --patience counts these validations)."
        ),
    ] = None,
    dist_rows: Annotated[
        str,
        typer.Option(
            help="Under torchrun: how the item tables' row gradients travel between the "
            "processes: gather (the touched rows) | dense (a catalogue-sized all-reduce)."
        ),
    ] = "gather",
    threads: Annotated[
        int | None,
        typer.Option(
            help="CPU threads for torch (default: one per core; idle threads sleep, so a "
            "busy machine costs no more than one thread)."
        ),
    ] = None,
) -> None:
    """Train a model on a prepared dataset; writes the model dir with history and curve.

    `sessionrec models` lists the models with their parameters, types and defaults. Started
    by torchrun (`torchrun --nproc-per-node N -m sessionrec train ...`) it trains as N
    processes, each on its shard of the data (gloo on CPU, NCCL on CUDA); rank 0 writes."""
    from sessionrec import registry
    from sessionrec.prepare import PreparedData
    from sessionrec.runner import parse_patience
    from sessionrec.runner import train as run

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, not {threads}")
        import torch

        torch.set_num_threads(threads)
    if param_file is not None and model != "gru4rec":
        raise ConfigError(f"--param-file ({param_file}) is read for gru4rec only, not {model!r}")
    stop = parse_patience(patience)
    data = PreparedData(data_dir)
    rating = registry.spec(model).task == registry.RATING
    if rating and stop not in (None, "auto"):
        raise ConfigError(
            f"{model} is a rating model: --patience applies to next-item models"
        )  # (sr.train refuses it too; said here in the CLI's own words)
    ddp = _join_torchrun(device, dist_rows)
    if rating:
        try:
            # refused before anything is printed
            if ddp is not None:
                from sessionrec.runner import check_distributable

                check_distributable(model)
            if resume:
                from sessionrec.rating.prepared import check_resumable

                check_resumable(model)
            _train_rating(model, data, out, parse_params(param), fit_on, seed, device,
                          overwrite, resume, ddp)  # fmt: skip
        finally:
            if ddp is not None:
                from sessionrec.training.distributed import shutdown_distributed

                shutdown_distributed()
        return
    try:
        m = run(
            model,
            data,
            out,
            params=parse_params(param),
            fit_on=fit_on,
            seed=seed,
            device=device,
            valid_metric=valid_metric,
            exclude_seen=exclude_seen,
            patience=stop,
            resume=resume,
            progress=True,
            overwrite=overwrite,
            param_file=param_file,
            valid_every=valid_every,
            distributed=ddp,
        )
    finally:
        if ddp is not None:
            from sessionrec.training.distributed import shutdown_distributed

            shutdown_distributed()
    if ddp is not None and not ddp.is_main:
        return  # rank 0 reports
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    last = history[-1] if history else {}
    console.print(
        f"trained {m.name} on {fit_on} of {data.path}: {len(history)} epoch(s), "
        f"{last.get('events_per_second', 0):,.0f} events/s → {out}",
        highlight=False,
    )
    done = json.loads((out / "training.json").read_text())
    if done.get("best_epoch") is not None and done["best_epoch"] != len(history):
        stopped = (
            f"stopped early ({done['patience']} validations without a better "
            f"{done['valid_metric']}); "
            if done.get("stopped_early")
            else ""
        )
        console.print(f"{stopped}kept the best epoch, {done['best_epoch']}", highlight=False)
    for w in done.get("warnings", []):
        err_console.print(f"warning: {w}", markup=False, highlight=False)


def _join_torchrun(device: str, rows: str) -> Any:
    """The process group torchrun started this process in (its ``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``), or None when not started by torchrun."""
    import os

    from sessionrec.training.distributed import ROWS, init_distributed

    if rows not in ROWS:
        raise ConfigError(f"--dist-rows must be one of {', '.join(ROWS)}, not {rows!r}")
    if "TORCHELASTIC_RUN_ID" not in os.environ and "WORLD_SIZE" not in os.environ:
        if rows != ROWS[0]:
            raise ConfigError("--dist-rows applies to a run started by torchrun, and this one "
                              "was not")  # fmt: skip
        return None

    return init_distributed(device, local_rank=int(os.environ.get("LOCAL_RANK", "0")), rows=rows)


def _train_rating(
    name: str,
    data: Any,
    out: Path,
    params: dict[str, Any],
    fit_on: str,
    seed: int,
    device: str,
    overwrite: bool,
    resume: bool,
    ddp: Any,
) -> None:
    """Fit a rating model on a PreparedData's ratings; per-epoch RMSE on valid when it has
    some. Under torchrun (``ddp``) rank 0 alone prints."""
    from sessionrec.rating.prepared import train_rating

    def on_epoch(record: dict[str, Any]) -> None:
        extra = f"  valid rmse {record['valid_rmse']:.4f}" if "valid_rmse" in record else ""
        console.print(
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}{extra}  "
            f"({record['seconds']:.1f} s)",
            highlight=False,
        )

    main = ddp is None or ddp.is_main
    if main:
        console.print(f"{name} on {fit_on} of {data.path}", highlight=False)
    m = train_rating(
        name, data, out, params=params, fit_on=fit_on, seed=seed, device=device,
        on_epoch=on_epoch, overwrite=overwrite, resume=resume, distributed=ddp,
    )  # fmt: skip
    if not main:
        return
    epochs = len((out / "history.jsonl").read_text().splitlines())  # (a resumed run's too)
    console.print(
        f"trained {name} on {len(m.train_ratings):,} ratings ({m.n_users:,} users, "
        f"{m.n_items:,} items): {epochs} epoch(s) → {out}",
        highlight=False,
    )
