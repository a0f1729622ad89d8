"""The training runner behind `sessionrec train` and ``sr.train``.

Creates a model from the registry, fits it on a PreparedData part while it shows a progress bar
per epoch, and writes the model directory: config.json, weights.safetensors, items.parquet,
history.jsonl, data_meta.json and learning_curve.png. The epochs themselves belong to
``sessionrec.training.trainer``: its ``EpochMonitor`` (the callback handed to ``fit``) scores
valid after every epoch when fitting on train, keeps ``history.jsonl``, checkpoints after every
epoch (weights, optimiser state, epoch; atomic), stops early on a valid metric with patience
and restores the best epoch. This module checks the arguments, the data and the output folder,
and continues a checkpoint (``--resume``) only on the same data with the same parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from math import isfinite
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sessionrec import registry
from sessionrec._io import claim_dir, mark_complete, write_json
from sessionrec._threads import calm_threads
from sessionrec.errors import ConfigError
from sessionrec.models import model_class
from sessionrec.models._resume import EPOCH_KEYS, read_resume_state, resumed_config
from sessionrec.models.base import SessionModel
from sessionrec.prepare.data import PreparedData, SessionData
from sessionrec.registry import check_distributable
from sessionrec.training.curve import learning_curve, write_history
from sessionrec.training.distributed import Distributed, on_main
from sessionrec.training.trainer import (
    CHECKPOINT,
    EpochMonitor,
    load_checkpoint,
)

if TYPE_CHECKING:
    from sessionrec.rating.base import RatingModel

log = logging.getLogger(__name__)

FIT_ON = ("train", "train+valid")
#: The config fields that count epochs: the one parameter a resumed run may change.
#: The valid metrics computed after each epoch (``_evaluator``).
#: valid metrics per epoch: any cutoff K (recall@20 and mrr@20 are always recorded too)
VALID_METRICS = ("recall", "mrr", "ndcg")
#: ``patience="auto"`` (the default of ``train`` and `sessionrec train`): when there are valid
#: metrics (fit on train, a non-empty valid part), stop after this many validations without a
#: better valid metric and keep the best epoch; without valid metrics (``train+valid``, an empty
#: valid part) train the configured number of epochs. Why 3: BENCHMARKS.md, "Early stopping by
#: default".
AUTO_PATIENCE = 3
#: The value of ``patience`` that chooses by the data (``AUTO_PATIENCE`` with valid metrics).
AUTO = "auto"


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
    patience: int | str | None = "auto",
    resume: bool = False,
    progress: bool = True,
    exclude_seen: bool = False,
    after_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
    overwrite: bool = False,
    param_file: str | Path | None = None,
    valid_every: int | None = None,
    distributed: Distributed | None = None,
) -> SessionModel | RatingModel:
    """Train ``model_name`` on ``data`` and write the model directory ``out_dir``.

    Args:
        model_name: a model of ``sessionrec.registry``: a next-item model (``gru4rec``,
            ...) or a rating model (``svd``, ...: fitted on the parts' ratings,
            valid RMSE per epoch; ``valid_metric`` does not apply, ``patience`` is refused,
            ``resume`` continues autorec's checkpoint).
        data: a PreparedData (or its directory).
        out_dir: the model directory to write.
        params: model hyperparameters (unknown names are rejected).
        fit_on: ``train`` (valid metrics after every epoch, early stopping possible) or
            ``train+valid`` (the final fit, no valid metrics).
        seed: the model's seed, unless ``params`` gives one.
        device: ``cpu``, ``cuda`` or ``auto``.
        valid_metric: the valid metric early stopping and the best epoch follow.
        patience: stop after this many validations without a better ``valid_metric`` and
            keep the best epoch; ``"auto"`` (default): ``AUTO_PATIENCE`` (3) when there are
            valid metrics (``fit_on="train"`` and a non-empty valid part), none otherwise (the
            configured number of epochs is trained); None: never stop early (the best epoch
            is still kept when there are valid metrics).
        resume: continue from the checkpoint in ``out_dir``, on the same data (its
            fingerprint is checked), with the checkpoint's parameters; only the number of
            epochs may be raised, which extends a finished run.
        progress: show a progress bar per epoch on stderr.
        exclude_seen: the valid metrics rank without the session's own items.
        after_epoch: called with each epoch's record once its valid metrics are in and it is
            checkpointed; returning True stops training, an exception propagates (tune's
            pruning).
        overwrite: replace ``out_dir`` when it is a model folder sessionrec wrote. Without
            it (and without ``resume``) ``out_dir`` must be new or empty.
        param_file: gru4rec only: an official GRU4Rec parameter file
            (``paramfiles/*.py`` of hidasib/GRU4Rec_PyTorch_Official), parsed without being
            executed and trained with the official code's semantics
            (``sessionrec.models.gru4rec_official``); ``params`` override single values.
        valid_every: with ``fit_on="train"``, score valid after every N-th epoch (and the
            last); None: often enough for about 10 validations (every epoch up to 10 epochs,
            every 10th of bpr's 100). Early stopping's ``patience`` counts validations.

        distributed: train as one rank of a process group (``init_distributed``; gru4rec,
            sasrec, repeatnet, two-tower, autorec): each rank trains on its shard, rank 0
            scores valid and writes ``out_dir`` and the checkpoints, every rank returns the
            same model (docs/distributed.md).

    Returns:
        The trained model (the best epoch's weights when valid metrics were computed).
    """
    if param_file is not None:
        if model_name != "gru4rec":
            raise ConfigError(
                f"a parameter file ({param_file}) is read for gru4rec only, not {model_name!r}"
            )
        from sessionrec.models.gru4rec_official import load_param_file

        params = {**load_param_file(param_file), **(params or {})}
    if not isinstance(data, PreparedData):
        data = PreparedData(data)
    if fit_on not in FIT_ON:
        raise ConfigError(f"fit_on must be one of {', '.join(FIT_ON)}, not {fit_on!r}")
    asked = parse_patience(patience)
    if distributed is not None:
        check_distributable(model_name)
    if registry.spec(model_name).task == registry.RATING:  # valid RMSE per epoch
        from sessionrec.rating.prepared import train_rating

        if asked not in (None, AUTO):
            raise ConfigError(f"{model_name} is a rating model: patience applies to next-item "
                              "models")  # fmt: skip
        return train_rating(
            model_name,
            data,
            out_dir,
            params=params,
            fit_on=fit_on,
            seed=seed,
            device=device,
            on_epoch=lambda r: log.info(_summary(r, improved=False)) if progress else None,
            overwrite=overwrite,
            resume=resume,
            distributed=distributed,
            after_epoch=after_epoch,
        )
    out = Path(out_dir)
    cls = model_class(model_name)
    given = dict(params or {})
    params = dict(given)
    fields = set(getattr(cls.Config, "__dataclass_fields__", {}))
    if "seed" in fields:
        params.setdefault("seed", seed)
    ckpt = out / CHECKPOINT
    has_valid = fit_on == "train" and data.valid.n_sessions > 0
    # "auto": early stopping wherever there is something to stop on
    stop_after = (AUTO_PATIENCE if has_valid else None) if isinstance(asked, str) else asked
    _check_stopping(stop_after, valid_metric, has_valid, fit_on)
    # Stopping by default, on epochs nobody asked for: the model's cap for that case (GRU4Rec:
    # 10 where its n_epochs, the count for a fit without valid, is 5), so that valid chooses.
    cap = getattr(cls, "early_stopping_epochs", None)
    asked_epochs = any(k in given for k in EPOCH_KEYS)
    if isinstance(asked, str) and stop_after and cap and not (resume or asked_epochs):
        params["n_epochs"] = cap
    if valid_every is not None and valid_every < 1:
        raise ConfigError(f"valid_every must be 1 or more, not {valid_every}")
    state: dict[str, Any] = {"history": [], "best_epoch": None, "best_value": None, "bad": 0}
    train_part = data.part(fit_on)  # read (and checked) before anything is written
    valid_part = data.part("valid") if has_valid else None
    fingerprint = data.fingerprint(fit_on)
    main = distributed is None or distributed.is_main
    if distributed is not None:
        device = str(distributed.device)
    if resume:
        # under distributed training rank 0 reads the checkpoint (other machines may not
        # see the folder) and hands it on
        state = on_main(distributed, lambda: read_resume_state(ckpt, model_name, data, fit_on, out))
        model = cls(resumed_config(cls, state, given, ckpt / "progress.json"), device=device)
    else:
        model = cls.from_params(params, device=device)  # a bad parameter fails before the claim
        on_main(distributed, lambda: claim_dir(out, overwrite=overwrite, verb="train"))
    state["fit_on"] = fit_on
    state["fingerprint"] = fingerprint
    model.items = data.items
    evaluate = (
        _evaluator(valid_metric, exclude_seen, progress and main)
        if valid_part is not None
        else None
    )
    best_arrays = load_checkpoint(ckpt, model) if resume and main else None
    if distributed is not None:
        ranked: Any = model  # (a model that supports_distributed)
        ranked.distributed = distributed
        if resume:  # rank 0's weights, optimiser state and epochs on every rank
            arrays = distributed.broadcast_arrays(ranked.training_state() if main else None)
            if not main:
                ranked.load_training_state(arrays)
    metric_key = f"valid_{valid_metric}"
    # Long runs without valid metrics (bpr: 100 epochs) print about 20 lines, not one each.
    planned = getattr(model.config, "epochs", None) or getattr(model.config, "n_epochs", None)
    print_every = max(1, -(-int(planned) // 20)) if planned else 1
    every = valid_every or (max(1, -(-int(planned) // 10)) if planned else 1)
    bar = _ProgressBar(progress and main, first_epoch=getattr(model, "epochs_done", 0))

    def valid_metrics(epoch: int) -> dict[str, float]:
        if evaluate is None or valid_part is None:
            return {}
        if epoch % every and epoch != planned:
            return {}
        res = evaluate(model, valid_part)
        return {f"valid_{k}": float(v) for k, v in res.items()}

    def report(record: dict[str, Any], improved: bool) -> None:
        epoch = record["epoch"]
        if improved or epoch == 1 or epoch % print_every == 0 or epoch == planned:
            bar.print(_summary(record, improved))  # history.jsonl keeps every epoch

    on_epoch = EpochMonitor(
        model_name,
        model,
        state,
        history_path=out / "history.jsonl",
        checkpoint_dir=ckpt,
        valid_metrics=valid_metrics,
        metric_key=metric_key,
        patience=stop_after,
        best_arrays=best_arrays,
        epoch_finished=bar.finish_epoch,
        report=report,
        after_epoch=after_epoch,
        distributed=distributed,
    )

    if hasattr(model, "progress_hook"):
        model.progress_hook = bar.update
    t0 = time.perf_counter()
    with bar, calm_threads():
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
    on_epoch.restore_best()
    if distributed is not None:
        ranked.distributed = None  # the process group is the caller's, not the model's
        if not main:
            return model
    stopped_early = stop_after is not None and state["bad"] >= stop_after
    warnings = _still_improving(state["history"], metric_key, model, stopped_early)
    warnings += list(getattr(model, "fit_warnings", []))
    for w in warnings:  # quiet in runs without progress output (tune's trials, sweeps)
        log.log(logging.WARNING if progress else logging.INFO, "%s: %s", out, w)
    model.save(out)
    model.trained_on = {
        "path": str(data.path),
        "fit_on": fit_on,
        "fingerprint": state["fingerprint"],
    }
    write_json(out / "data_meta.json", {**data.meta, **model.trained_on})
    write_json(
        out / "training.json",
        {
            "model": model_name,
            "fit_on": fit_on,
            "valid_metric": valid_metric,
            "exclude_seen": exclude_seen,
            "patience": stop_after,
            "patience_asked": asked,
            "stopped_early": stopped_early,
            "best_epoch": state["best_epoch"],
            "best_value": state["best_value"],
            "epochs": len(state["history"]),
            "warnings": warnings,
        },
    )
    learning_curve(out / "learning_curve.png", state["history"], model_name)
    mark_complete(out, "train")
    return model


def _still_improving(
    history: list[dict[str, Any]], metric_key: str, model: Any, stopped_early: bool
) -> list[str]:
    """A warning when the last validation was the best of two or more: the epoch count, not
    valid, ended the run (the default cap of a run that stops early included), and more epochs
    may score better. Empty otherwise."""
    scored = [
        r for r in history if isinstance(r.get(metric_key), float) and isfinite(r[metric_key])
    ]
    if stopped_early or len(scored) < 2:
        return []
    best = max(scored, key=lambda r: r[metric_key])
    last = scored[-1]
    if best["epoch"] != last["epoch"] or last[metric_key] <= scored[-2][metric_key]:
        return []
    key = next((k for k in EPOCH_KEYS if hasattr(model.config, k)), "n_epochs")
    return [
        f"{metric_key} was still improving at the last epoch ({last['epoch']}: "
        f"{scored[-2][metric_key]:.4f} → {last[metric_key]:.4f}); more epochs may score "
        f"better (-p {key}=N)"
    ]


def parse_patience(value: int | str | None) -> int | Literal["auto"] | None:
    """``patience`` as ``train`` takes it: ``"auto"``, a number of validations (an int, or a
    string of digits from the command line), or None / ``"none"`` / ``"off"`` (never stop)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word == AUTO:
            return "auto"
        if word in ("none", "off", "never"):
            return None
        if word.lstrip("-").isdigit():
            return int(word)
    raise ConfigError(f"patience must be 'auto', a number of validations or 'none', not {value!r}")


def _check_stopping(patience: int | None, valid_metric: str, has_valid: bool, fit_on: str) -> None:
    """Early stopping needs valid metrics: refuse what would be silently ignored."""
    name, _, k = valid_metric.partition("@")
    if name not in VALID_METRICS or not k.isdigit() or int(k) < 1:
        raise ConfigError(
            f"valid_metric must be {', '.join(f'{m}@K' for m in VALID_METRICS)}, "
            f"not {valid_metric!r}"
        )
    if patience is None:
        return
    if patience < 1:
        raise ConfigError(f"patience must be at least 1, not {patience}")
    if not has_valid:
        why = "fit_on is train+valid" if fit_on != "train" else "the valid part is empty"
        raise ConfigError(f"patience {patience} needs valid metrics, and there are none: {why}")


def _evaluator(
    valid_metric: str = "mrr@20", exclude_seen: bool = False, progress: bool = False
) -> Callable[[SessionModel, SessionData], dict[str, float]] | None:
    """Recall@20, MRR@20 and ``valid_metric`` through ``sessionrec.evaluation.evaluate`` when
    it is installed."""
    import importlib

    try:
        evaluate = importlib.import_module("sessionrec.evaluation").evaluate
    except (ImportError, AttributeError):
        log.warning("sessionrec.evaluation is not available: no valid metrics, no early stopping")
        return None

    keep = {"recall@20", "mrr@20", valid_metric}
    k = valid_metric.partition("@")[2]
    cutoffs = tuple(sorted({20, int(k)})) if k.isdigit() else (20,)

    def run(model: SessionModel, data: SessionData) -> dict[str, float]:
        res = evaluate(model, data, cutoffs=cutoffs, exclude_seen=exclude_seen, progress=progress)
        return {k: float(v) for k, v in res.metrics.items() if k in keep}

    return run


def _summary(record: dict[str, Any], improved: bool) -> str:
    parts = [f"epoch {record['epoch']}"]
    if record.get("train_loss") is not None:
        parts.append(f"loss {record['train_loss']:.4f}")
    parts.append(f"{record['events_per_second']:,.0f} events/s")
    parts.append(f"{record['seconds']:.1f}s")
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k.startswith("valid_")]
    return ", ".join(parts) + (" *" if improved else "")


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
