"""The training runner behind `sessionrec train` and ``sr.train``.

Creates a model, fits it on a PreparedData part while it shows a progress bar per epoch,
evaluates on valid after every epoch (when fitting on train), keeps ``history.jsonl``,
checkpoints after every epoch (weights, optimiser state, epoch; atomic), stops early on a valid
metric with patience and restores the best epoch, and finally writes the model directory:
config.json, weights.safetensors, items.parquet, history.jsonl, data_meta.json and
learning_curve.png.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sessionrec._io import atomic_dir, read_json, write_json
from sessionrec.errors import ConfigError, DataError, TrainingDivergedError
from sessionrec.models import model_class
from sessionrec.models.base import SessionModel, make_config
from sessionrec.prepare.data import PreparedData, SessionData
from sessionrec.training.curve import learning_curve, write_history
from sessionrec.training.finite import check_arrays

if TYPE_CHECKING:
    from sessionrec.rating.base import RatingModel

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
FIT_ON = ("train", "train+valid")


def train(
    model_name: str,
    data: PreparedData | str | Path,
    out_dir: str | Path,
    *,
    params: dict[str, Any] | None = None,
    fit_on: str = "train",
    seed: int = 0,
    device: str = "auto",
    valid_metric: str = "mrr@20",
    patience: int | None = None,
    resume: bool = False,
    progress: bool = True,
    valid_every: int | None = None,
) -> SessionModel | RatingModel:
    """Train ``model_name`` on ``data`` and write the model directory ``out_dir``.

    Args:
        model_name: a name of ``sessionrec.models.REGISTRY`` (``gru4rec``, ...) or of
            ``sessionrec.rating.RATING_MODELS`` (``svd``, ...: fitted on the parts' ratings,
            valid RMSE per epoch; ``valid_metric`` does not apply, ``patience`` and ``resume``
            are refused).
        data: a PreparedData (or its directory).
        out_dir: the model directory to write.
        params: model hyperparameters (unknown names are rejected).
        fit_on: ``train`` (valid metrics after every epoch, early stopping possible) or
            ``train+valid`` (the final fit, no valid metrics).
        seed: the model's seed, unless ``params`` gives one.
        device: ``cpu``, ``cuda`` or ``auto``.
        valid_metric: the valid metric early stopping and the best epoch follow.
        patience: stop after this many epochs without improvement (None = never).
        resume: continue from the checkpoint in ``out_dir`` (same parameters).
        progress: show a progress bar per epoch on stderr.
        valid_every: with ``fit_on="train"``, score valid after every N-th epoch (and the
            last); None: often enough for about 10 validations (every epoch up to 10 epochs,
            every 10th of bpr's 100). Early stopping's ``patience`` counts validations.

    Returns:
        The trained model (the best epoch's weights when valid metrics were computed).
    """
    if not isinstance(data, PreparedData):
        data = PreparedData(data)
    if fit_on not in FIT_ON:
        raise ConfigError(f"fit_on must be one of {', '.join(FIT_ON)}, not {fit_on!r}")
    from sessionrec.rating import RATING_MODELS

    if model_name in RATING_MODELS:  # rating models: valid RMSE per epoch, no checkpoints
        from sessionrec.rating.prepared import train_rating

        if resume or patience is not None:
            raise ConfigError(
                f"{model_name} is a rating model: resume and patience apply to next-item models"
            )

        return train_rating(
            model_name,
            data,
            out_dir,
            params=params,
            fit_on=fit_on,
            seed=seed,
            device=device,
            on_epoch=lambda r: log.info(_summary(r, improved=False)) if progress else None,
        )
    out = Path(out_dir)
    cls = model_class(model_name)
    params = dict(params or {})
    fields = set(getattr(cls.Config, "__dataclass_fields__", {}))
    if "seed" in fields:
        params.setdefault("seed", seed)
    ckpt = out / CHECKPOINT
    state: dict[str, Any] = {"history": [], "best_epoch": None, "best_value": None, "bad": 0}
    if resume:
        if not (ckpt / "progress.json").exists():
            raise DataError(ckpt, expected="a checkpoint to resume from", found="none")
        state = read_json(ckpt / "progress.json")
        if state["model"] != model_name:
            raise ConfigError(f"the checkpoint is of model {state['model']!r}, not {model_name!r}")
        saved: Any = make_config(cls.Config, state["config"], warn=False)
        asked: Any = make_config(cls.Config, params)
        if saved != asked and params:
            log.warning("resuming with the checkpoint's parameters, not the ones given")
        model = cls(saved, device=device)
    else:
        model = cls.from_params(params, device=device)
    model.items = data.items
    train_part = data.part(fit_on)
    valid_part = data.part("valid") if fit_on == "train" and data.valid.n_sessions else None
    evaluate = _evaluator() if valid_part is not None else None
    if resume:
        from safetensors.torch import load_file

        model.load_training_state(  # type: ignore[attr-defined]
            load_file(str(ckpt / "state.safetensors"), device=str(model.device))
        )
        log.info("resuming after epoch %d", model.epochs_done)  # type: ignore[attr-defined]
    best_arrays: dict[str, torch.Tensor] | None = None
    if resume and (ckpt / "best.safetensors").exists():
        from safetensors.torch import load_file

        best_arrays = load_file(str(ckpt / "best.safetensors"), device=str(model.device))
    metric_key = f"valid_{valid_metric}"
    # Long runs without valid metrics (bpr: 100 epochs) print about 20 lines, not one each.
    planned = getattr(model.config, "epochs", None) or getattr(model.config, "n_epochs", None)
    print_every = max(1, -(-int(planned) // 20)) if planned else 1
    if valid_every is not None and valid_every < 1:
        raise ConfigError(f"valid_every must be 1 or more, not {valid_every}")
    every = valid_every or (max(1, -(-int(planned) // 10)) if planned else 1)
    bar = _ProgressBar(progress, first_epoch=getattr(model, "epochs_done", 0))

    def valid_metrics(epoch: int) -> dict[str, float]:
        if evaluate is None or valid_part is None:
            return {}
        if epoch % every and epoch != planned:
            return {}
        res = evaluate(model, valid_part)
        return {f"valid_{k}": float(v) for k, v in res.items()}

    def on_epoch(record: dict[str, Any]) -> bool:
        nonlocal best_arrays
        bar.finish_epoch()
        # Before anything is scored, kept or checkpointed: a diverged epoch is never the best.
        loss = record.get("train_loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDivergedError(
                model_name, f"the training loss turned {loss}", record["epoch"]
            )
        check_arrays(model_name, model.state_arrays(), record["epoch"])
        record.update(valid_metrics(record["epoch"]))
        bad = [k for k, v in record.items() if k.startswith("valid_") and not math.isfinite(v)]
        if bad:
            raise TrainingDivergedError(model_name, f"{bad[0]} turned non-finite", record["epoch"])
        state["history"].append(record)
        value = record.get(metric_key)
        improved = False
        if value is not None:
            if state["best_value"] is None or value > state["best_value"]:
                state["best_value"], state["best_epoch"], state["bad"] = value, record["epoch"], 0
                best_arrays = {k: v.detach().clone() for k, v in model.state_arrays().items()}
                improved = True
            else:
                state["bad"] += 1
        epoch = record["epoch"]
        if improved or epoch == 1 or epoch % print_every == 0 or epoch == planned:
            bar.print(_summary(record, improved))  # history.jsonl keeps every epoch
        write_history(out / "history.jsonl", state["history"])
        if hasattr(model, "training_state"):
            _checkpoint(ckpt, model, model_name, state, best_arrays if improved else None)
        return patience is not None and state["bad"] >= patience

    if hasattr(model, "progress_hook"):
        model.progress_hook = bar.update
    t0 = time.perf_counter()
    with bar:
        model.fit(train_part, valid_part, callback=on_epoch)
    if not state["history"]:  # a model fitted once (no epochs): one record
        seconds = time.perf_counter() - t0
        record = {
            "epoch": 1,
            "train_loss": None,
            "seconds": seconds,
            "events_per_second": train_part.n_events / max(seconds, 1e-9),
        }
        record.update(valid_metrics(1))
        state["history"].append(record)
        write_history(out / "history.jsonl", state["history"])
    if best_arrays is not None and state["best_epoch"] != state["history"][-1]["epoch"]:
        log.info(
            "restoring the best epoch %s (%s %.4f)",
            state["best_epoch"],
            metric_key,
            state["best_value"],
        )
        model.load_state_arrays(best_arrays)
    model.save(out)
    write_json(out / "data_meta.json", {"path": str(data.path), "fit_on": fit_on, **data.meta})
    write_json(
        out / "training.json",
        {
            "model": model_name,
            "fit_on": fit_on,
            "valid_metric": valid_metric,
            "patience": patience,
            "best_epoch": state["best_epoch"],
            "best_value": state["best_value"],
            "epochs": len(state["history"]),
        },
    )
    learning_curve(out / "learning_curve.png", state["history"], model_name)
    return model


def _evaluator() -> Callable[[SessionModel, SessionData], dict[str, float]] | None:
    """Recall@20 / MRR@20 through ``sessionrec.evaluation.evaluate`` when it is installed."""
    import importlib

    try:
        evaluate = importlib.import_module("sessionrec.evaluation").evaluate
    except (ImportError, AttributeError):
        log.warning("sessionrec.evaluation is not available: no valid metrics, no early stopping")
        return None

    def run(model: SessionModel, data: SessionData) -> dict[str, float]:
        res = evaluate(model, data, cutoffs=(20,))
        return {k: float(v) for k, v in res.metrics.items() if k in ("recall@20", "mrr@20")}

    return run


def _summary(record: dict[str, Any], improved: bool) -> str:
    parts = [f"epoch {record['epoch']}"]
    if record.get("train_loss") is not None:
        parts.append(f"loss {record['train_loss']:.4f}")
    parts.append(f"{record['events_per_second']:,.0f} events/s")
    parts.append(f"{record['seconds']:.1f}s")
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k.startswith("valid_")]
    return ", ".join(parts) + (" *" if improved else "")


def _checkpoint(
    path: Path,
    model: SessionModel,
    model_name: str,
    state: dict[str, Any],
    best: dict[str, torch.Tensor] | None,
) -> None:
    """Write the checkpoint directory atomically (a crash leaves the previous one whole)."""
    import dataclasses
    import shutil

    from safetensors.torch import save_file

    def cpu(arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().cpu() for k, v in arrays.items()}

    with atomic_dir(path) as tmp:
        save_file(cpu(model.training_state()), str(tmp / "state.safetensors"))  # type: ignore[attr-defined]
        if best is not None:
            save_file(cpu(best), str(tmp / "best.safetensors"))
        elif (path / "best.safetensors").exists():
            shutil.copyfile(path / "best.safetensors", tmp / "best.safetensors")
        write_json(
            tmp / "progress.json",
            {"model": model_name, "config": dataclasses.asdict(model.config), **state},
        )


class _ProgressBar:
    """A rich progress bar per epoch with the running loss and events/s (stderr)."""

    def __init__(self, enabled: bool, first_epoch: int = 0) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._console: Any = None
        self._task: Any = None
        self._epoch = first_epoch
        self._t0 = 0.0

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.console import Console

            self._console = Console(stderr=True)
        # The bar only on a terminal: elsewhere rich leaves a blank line per bar behind.
        if self._console is not None and self._console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[speed]:,.0f} events/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, done: int, total: int, loss: float) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._epoch += 1
            self._t0 = time.perf_counter()
            self._task = self._progress.add_task(
                f"epoch {self._epoch}", total=total, loss=loss, speed=0.0
            )
        speed = done / max(time.perf_counter() - self._t0, 1e-9)
        self._progress.update(self._task, completed=done, loss=loss, speed=speed)

    def finish_epoch(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
        self._task = None

    def print(self, line: str) -> None:
        log.info(line)
        if self._console is not None:
            self._console.print(line, highlight=False)
