"""One epoch loop for the models trained in epochs (gru4rec, two-tower, autorec).

A model says how to run one epoch (``train_epoch(epoch, steps)``: its mini-batches in its own
order, each reported to ``steps.done``) and keeps its own state (weights, optimiser, the number
of finished epochs). The trainer owns the rest, once for every model:

* the loop over epochs, from the first one not yet done (``epochs_done``: a model restored from
  a checkpoint continues after it) to ``n_epochs``;
* the per-step finiteness check (``sessionrec.training.finite``): a NaN loss stops training at
  that step, naming the epoch and the step;
* the running mean loss for the progress hook, every ``report_every`` steps and at the last;
* the epoch record (``epoch``, ``train_loss``, ``seconds``, ``events_per_second``), amended by
  the model's ``after_epoch`` (rating models add ``valid_rmse``), then handed to the
  ``callback``, which may stop training by returning True.

The callback `sessionrec train` (``sessionrec.runner``) hands to ``fit`` is an
``EpochMonitor``, also here: it refuses a non-finite epoch, adds the valid metrics, keeps the
history (``history.jsonl``), stops early with patience and restores the best epoch, and
checkpoints every epoch (``write_checkpoint``; ``load_checkpoint`` continues a run). It serves
every model that reports epochs, those of ``fit_epochs`` and the factor models (bpr, als).

Why one loop: the three models carried three copies of it, which drifted (one logged, one
checked the loss per step, one reported progress); lkpy's ``ModelTrainer.train_epoch`` showed
the split: the model knows an epoch, the trainer knows epochs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from sessionrec._io import atomic_dir, write_json
from sessionrec.errors import DataError, TrainingDivergedError
from sessionrec.training.curve import write_history
from sessionrec.training.distributed import Distributed
from sessionrec.training.finite import check_arrays, check_loss

log = logging.getLogger(__name__)

#: the folder, inside a model folder, that holds the training state after each epoch
CHECKPOINT = "checkpoint"

#: Called during an epoch with (events done, events in the epoch, running mean loss).
ProgressHook = Callable[[int, int, float], None]
#: Called after each epoch with its record; returning True stops training.
EpochCallback = Callable[[dict[str, Any]], bool | None]


@dataclass
class EpochSteps:
    """What a model reports of one epoch's steps, and what the trainer makes of it.

    ``train_loss`` is ``Σ value / Σ weight`` over the steps, in the model's own terms (a loss
    per pair weighted by the pairs of the step, a mean per batch, a squared error per observed
    rating); ``total`` stays a tensor on the model's device when the values are tensors.
    """

    model: str
    epoch: int
    n_steps: int
    n_events: int
    report_every: int
    hook: ProgressHook | None = None
    first_report: int = 1
    total: Any = 0.0
    weight: float = 0
    events: int = 0
    step: int = 0

    def done(
        self,
        loss: torch.Tensor | float,
        *,
        value: torch.Tensor | float | None = None,
        weight: float = 1,
        events: int | None = None,
    ) -> None:
        """One finished step: ``loss`` is checked (a non-finite one raises
        ``TrainingDivergedError`` naming this epoch and step); ``value`` (default ``loss``) and
        ``weight`` add to the epoch's loss; ``events`` (default ``weight``) to its events."""
        self.step += 1
        check_loss(self.model, loss, self.epoch, self.step)
        self.total = self.total + (loss if value is None else value)
        self.weight += weight
        self.events += int(weight if events is None else events)
        if self.hook is not None and (
            self.step == self.n_steps
            or (self.step >= self.first_report
                and (self.step - self.first_report) % self.report_every == 0)
        ):  # fmt: skip
            self.hook(self.events, self.n_events, self.mean_loss())

    def mean_loss(self) -> float:
        return float(self.total) / max(self.weight, 1)


class EpochTrainable(Protocol):
    """What the trainer needs of a model."""

    epochs_done: int
    progress_hook: ProgressHook | None

    @property
    def name(self) -> str:
        """The model's name (in messages)."""

    def train_epoch(self, epoch: int, steps: EpochSteps) -> None:
        """Run epoch ``epoch`` (1-based), reporting each step to ``steps.done``."""


def fit_epochs(
    model: EpochTrainable,
    n_epochs: int,
    *,
    n_steps: int,
    n_events: int,
    report_every: int = 200,
    first_report: int = 1,
    callback: EpochCallback | None = None,
    after_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Train ``model`` from epoch ``model.epochs_done + 1`` to ``n_epochs`` (see the module).

    Args:
        n_steps, n_events: the steps and events of one epoch (for the progress hook).
        report_every, first_report: call ``model.progress_hook`` after step ``first_report``,
            then every ``report_every`` steps, and after the last.
        callback: gets each epoch's record; True stops after that epoch.
        after_epoch: amends the record before the callback sees it (and may raise).
    """
    for epoch in range(model.epochs_done + 1, n_epochs + 1):
        started = time.perf_counter()
        steps = EpochSteps(
            model.name, epoch, n_steps, n_events, report_every, model.progress_hook, first_report
        )
        model.train_epoch(epoch, steps)
        seconds = time.perf_counter() - started
        model.epochs_done = epoch
        ddp = getattr(model, "distributed", None)
        if ddp is not None:  # the record of every rank's steps together
            total, weight, events = ddp.sum_dense_([], [float(steps.total), steps.weight,
                                                        float(steps.events)])  # fmt: skip
            steps.total, steps.weight, steps.events = total, weight, int(events)
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": steps.mean_loss(),
            "seconds": seconds,
            "events_per_second": steps.events / max(seconds, 1e-9),
        }
        log.info(
            "%s epoch %d: loss %.4f, %.0f events/s",
            model.name,
            epoch,
            record["train_loss"],
            record["events_per_second"],
        )
        if after_epoch is not None:
            after_epoch(record)
        if callback is not None and callback(record):
            break


class EpochMonitor:
    """The per-epoch callback of a training run: checks, valid metrics, history, early
    stopping with the best epoch kept, checkpoints.

    ``state`` is the run's record, written to the checkpoint's ``progress.json`` as is:
    ``history`` (the epoch records), ``best_epoch``, ``best_value``, ``bad`` (validations
    without improvement) and whatever else the caller keeps there (``fit_on``,
    ``fingerprint``). A resumed run passes the checkpoint's state and best arrays back in.

    Args:
        model_name, model: the model being fitted (its ``state_arrays`` are checked, kept as
            the best and checkpointed with its ``training_state`` when it has one).
        history_path: ``history.jsonl``, rewritten after every epoch.
        checkpoint_dir: where ``write_checkpoint`` puts the checkpoint (None: no checkpoints).
        valid_metrics: the valid metrics of an epoch (``{"valid_mrr@20": ...}``; may be empty).
        metric_key: the record key early stopping and the best epoch follow.
        patience: stop after this many validations without improvement (None: never).
        best_arrays: the best epoch's arrays so far (from a checkpoint).
        epoch_finished: called first, when an epoch's record comes in (the progress bar).
        report: called with (record, improved) once the record is complete (printing).
        after_epoch: called last with the record; True stops (tune's pruning raises here).
    """

    def __init__(
        self,
        model_name: str,
        model: Any,
        state: dict[str, Any],
        *,
        history_path: Path,
        checkpoint_dir: Path | None,
        valid_metrics: Callable[[int], dict[str, float]],
        metric_key: str,
        patience: int | None = None,
        best_arrays: dict[str, torch.Tensor] | None = None,
        epoch_finished: Callable[[], None] | None = None,
        report: Callable[[dict[str, Any], bool], None] | None = None,
        after_epoch: EpochCallback | None = None,
        distributed: Distributed | None = None,
    ) -> None:
        self.distributed = distributed
        self.model_name, self.model, self.state = model_name, model, state
        self.history_path, self.checkpoint_dir = history_path, checkpoint_dir
        self.valid_metrics, self.metric_key, self.patience = valid_metrics, metric_key, patience
        self.best_arrays = best_arrays
        self.epoch_finished, self.report, self.after_epoch = epoch_finished, report, after_epoch

    def __call__(self, record: dict[str, Any]) -> bool:
        if self.epoch_finished is not None:
            self.epoch_finished()
        name, model, state, epoch = self.model_name, self.model, self.state, record["epoch"]
        # Before anything is scored, kept or checkpointed: a diverged epoch is never the best.
        loss = record.get("train_loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDivergedError(name, f"the training loss turned {loss}", epoch)
        check_arrays(name, model.state_arrays(), epoch)
        ddp = self.distributed
        main = ddp is None or ddp.is_main
        # Under distributed training rank 0 scores valid and every rank takes its numbers: the
        # ranks hold the same weights, and so agree on the best epoch and on stopping.
        metrics = self.valid_metrics(epoch) if main else {}
        record.update(metrics if ddp is None else ddp.broadcast_object(metrics))
        bad = [k for k, v in record.items() if k.startswith("valid_") and not math.isfinite(v)]
        if bad:
            raise TrainingDivergedError(name, f"{bad[0]} turned non-finite", epoch)
        state["history"].append(record)
        value = record.get(self.metric_key)
        improved = False
        if value is not None:
            if state["best_value"] is None or value > state["best_value"]:
                state["best_value"], state["best_epoch"], state["bad"] = value, epoch, 0
                if main:  # (the other ranks take rank 0's weights at the end)
                    self.best_arrays = {
                        k: v.detach().clone() for k, v in model.state_arrays().items()
                    }
                improved = True
            else:
                state["bad"] += 1
        stop = False
        if main:
            if self.report is not None:
                self.report(record, improved)
            write_history(self.history_path, state["history"])
            if self.checkpoint_dir is not None and hasattr(model, "training_state"):
                write_checkpoint(self.checkpoint_dir, model, name, state,
                                 self.best_arrays if improved else None)  # fmt: skip
            stop = bool(self.after_epoch(record)) if self.after_epoch is not None else False
        stop = stop or (self.patience is not None and state["bad"] >= self.patience)
        return stop if ddp is None else ddp.agree(stop)

    def restore_best(self) -> int | None:
        """Load the best epoch's arrays into the model when training went on past it;
        returns the epoch restored (None when the last epoch is the best, or none is known).
        Under distributed training every rank ends with rank 0's model."""
        ddp = self.distributed
        if ddp is not None:
            restored = self._restore_best() if ddp.is_main else None
            arrays = ddp.broadcast_arrays(self.model.state_arrays() if ddp.is_main else None)
            if not ddp.is_main:
                self.model.load_state_arrays(arrays)
            return ddp.broadcast_object(restored)
        return self._restore_best()

    def _restore_best(self) -> int | None:
        state = self.state
        if self.best_arrays is None or state["best_epoch"] == state["history"][-1]["epoch"]:
            return None
        log.info("restoring the best epoch %s (%s %.4f)", state["best_epoch"], self.metric_key,
                 state["best_value"])  # fmt: skip
        self.model.load_state_arrays(self.best_arrays)
        return int(state["best_epoch"])


# -- checkpoints: the state to continue a run after its last finished epoch -----------------
#: A checkpoint folder: ``state.safetensors`` (the model's ``training_state``: weights,
#: optimiser state, epochs done), ``best.safetensors`` (the best epoch's arrays, when known)
#: and ``progress.json`` (model name, config and the run's ``state``).
PROGRESS = "progress.json"


def optimizer_arrays(opt: torch.optim.Optimizer | None) -> dict[str, torch.Tensor]:
    """A torch optimiser's per-parameter state as a checkpoint's flat arrays
    ``opt/<parameter index>/<name>`` (none before the optimiser exists)."""
    if opt is None:
        return {}
    return {
        f"opt/{i}/{k}": torch.as_tensor(v)
        for i, st in opt.state_dict()["state"].items()
        for k, v in st.items()
    }


def load_optimizer_arrays(opt: torch.optim.Optimizer, arrays: dict[str, torch.Tensor]) -> None:
    """Give ``opt`` the state that ``optimizer_arrays`` wrote into ``arrays`` (other keys are
    left alone; no ``opt/`` key leaves ``opt`` as it is)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in arrays.items():
        if key.startswith("opt/"):
            _, i, name = key.split("/")
            state.setdefault(int(i), {})[name] = v
    if state:
        sd = opt.state_dict()
        sd["state"] = state
        opt.load_state_dict(sd)


def write_checkpoint(
    path: Path,
    model: Any,
    model_name: str,
    state: dict[str, Any],
    best: dict[str, torch.Tensor] | None,
) -> None:
    """Write the checkpoint folder atomically (a crash leaves the previous one whole); without
    a new ``best`` the previous ``best.safetensors`` is kept."""
    from safetensors.torch import save_file

    def cpu(arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().cpu() for k, v in arrays.items()}

    with atomic_dir(path) as tmp:
        save_file(cpu(model.training_state()), str(tmp / "state.safetensors"))
        if best is not None:
            save_file(cpu(best), str(tmp / "best.safetensors"))
        elif (path / "best.safetensors").exists():
            shutil.copyfile(path / "best.safetensors", tmp / "best.safetensors")
        write_json(
            tmp / PROGRESS,
            {"model": model_name, "config": dataclasses.asdict(model.config), **state},
        )


def read_progress(path: Path) -> dict[str, Any]:
    """A checkpoint's progress.json, checked: a damaged one is a DataError naming it."""
    from sessionrec.errors import one_line

    try:
        state = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise DataError(path, line=exc.lineno, expected="JSON", found=exc.msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, expected="a readable JSON file", found=one_line(exc)) from None
    keys = ("model", "config", "history")
    if not isinstance(state, dict) or not all(k in state for k in keys):
        raise DataError(path, expected=f"a checkpoint record with {', '.join(keys)}",
                        found=f"keys {sorted(state) if isinstance(state, dict) else type(state).__name__}")  # fmt: skip
    if not isinstance(state["config"], dict) or not isinstance(state["history"], list):
        raise DataError(path, expected="config (an object) and history (a list)",
                        found=f"{type(state['config']).__name__}, {type(state['history']).__name__}")  # fmt: skip
    return state


def load_checkpoint(path: Path, model: Any) -> dict[str, torch.Tensor] | None:
    """Restore ``model``'s training state from the checkpoint folder ``path`` (its next
    ``fit`` continues after the last finished epoch); returns the best epoch's arrays, if
    kept. Arrays that do not fit the model are a ``DataError`` naming the file."""
    from sessionrec._io import load_weights
    from sessionrec.errors import one_line

    try:
        model.load_training_state(
            load_weights(path / "state.safetensors", device=str(model.device))
        )
    except (RuntimeError, KeyError, ValueError, IndexError, TypeError) as exc:
        raise DataError(path / "state.safetensors", expected="the checkpoint's arrays",
                        found=one_line(exc)) from None  # fmt: skip
    log.info("resuming after epoch %d", model.epochs_done)
    if (path / "best.safetensors").exists():
        return load_weights(path / "best.safetensors", device=str(model.device))
    return None


__all__ = [
    "EpochCallback",
    "EpochMonitor",
    "EpochSteps",
    "EpochTrainable",
    "ProgressHook",
    "fit_epochs",
    "load_checkpoint",
    "read_progress",
    "write_checkpoint",
]
