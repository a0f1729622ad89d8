"""The one epoch trainer (``sessionrec.training.trainer``): the loop, the per-step check, the
progress schedule, the record, early stopping with the best epoch restored, checkpoints."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _helpers import session_data

from sessionrec.errors import TrainingDivergedError
from sessionrec.models import create
from sessionrec.rating import Ratings, create_rating_model
from sessionrec.training.trainer import (
    EpochMonitor,
    EpochSteps,
    fit_epochs,
    load_checkpoint,
    read_progress,
    write_checkpoint,
)


class _Toy:
    """A model of one weight that adds its epoch's losses to it: every step is visible."""

    name = "toy"

    def __init__(self, losses: list[list[float]]) -> None:
        self.losses = losses
        self.epochs_done = 0
        self.progress_hook: Any = None
        self.w = torch.zeros(1)
        self.config = _ToyConfig()

    def train_epoch(self, epoch: int, steps: EpochSteps) -> None:
        for loss in self.losses[epoch - 1]:
            steps.done(torch.tensor(loss), value=loss * 2, weight=2, events=3)
            self.w += loss

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return {"w": self.w.clone()}

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.w = arrays["w"].clone()

    def training_state(self) -> dict[str, torch.Tensor]:
        return {"w": self.w, "epochs_done": torch.tensor([self.epochs_done])}

    def load_training_state(self, arrays: dict[str, torch.Tensor]) -> None:
        self.w = arrays["w"].clone()
        self.epochs_done = int(arrays["epochs_done"][0])

    device = torch.device("cpu")


@dataclass(frozen=True)
class _ToyConfig:
    n_epochs: int = 6


def test_the_loop_runs_the_epochs_not_done_and_builds_each_record() -> None:
    toy = _Toy([[1.0, 3.0], [2.0], [4.0], [5.0]])
    toy.epochs_done = 1  # as after a checkpoint: continue with epoch 2
    records: list[dict[str, Any]] = []

    def amend(r: dict[str, Any]) -> None:
        r["extra"] = r["epoch"] * 10

    def stop_after_3(r: dict[str, Any]) -> bool:
        records.append(r)
        return bool(r["epoch"] == 3)

    fit_epochs(toy, 4, n_steps=1, n_events=3, callback=stop_after_3, after_epoch=amend)
    assert [r["epoch"] for r in records] == [2, 3]  # the callback stopped after epoch 3
    assert toy.epochs_done == 3 and float(toy.w) == 6.0
    assert records[0]["train_loss"] == 2.0 and records[0]["extra"] == 20
    assert records[0]["events_per_second"] > 0 and records[0]["seconds"] >= 0


def test_a_non_finite_step_stops_at_once_naming_epoch_and_step() -> None:
    toy = _Toy([[1.0], [1.0, 2.0, math.nan, 3.0]])
    with pytest.raises(TrainingDivergedError, match=r"toy diverged: .* at epoch 2, step 3"):
        fit_epochs(toy, 2, n_steps=4, n_events=12)
    assert toy.epochs_done == 1 and float(toy.w) == 4.0  # the NaN step never ran its update


def test_progress_after_the_first_report_then_every_n_steps_and_the_last() -> None:
    calls: list[tuple[int, int, float]] = []
    steps = EpochSteps("toy", 1, n_steps=7, n_events=21, report_every=3,
                       hook=lambda *a: calls.append(a), first_report=2)  # fmt: skip
    for loss in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]:
        steps.done(loss, weight=1, events=3)
    assert [c[0] for c in calls] == [6, 15, 21]  # steps 2, 5 and 7 (the last)
    assert calls[-1] == (21, 21, 4.0)


def test_the_monitor_stops_with_patience_and_restores_the_best_epoch(tmp_path: Path) -> None:
    toy = _Toy([[1.0]] * 6)
    valid = {1: 0.1, 2: 0.3, 3: 0.2, 4: 0.25, 5: 0.9, 6: 1.0}
    state: dict[str, Any] = {"history": [], "best_epoch": None, "best_value": None, "bad": 0}
    monitor = EpochMonitor("toy", toy, state, history_path=tmp_path / "history.jsonl",
                           checkpoint_dir=tmp_path / "ckpt",
                           valid_metrics=lambda e: {"valid_m": valid[e]}, metric_key="valid_m",
                           patience=2)  # fmt: skip
    fit_epochs(toy, 6, n_steps=1, n_events=3, callback=monitor)
    assert toy.epochs_done == 4 and state["best_epoch"] == 2 and state["bad"] == 2
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 4
    assert monitor.restore_best() == 2 and float(toy.w) == 2.0
    # the checkpoint holds epoch 4's state and epoch 2's weights as the best
    progress = read_progress(tmp_path / "ckpt" / "progress.json")
    assert progress["model"] == "toy" and progress["best_epoch"] == 2
    again = _Toy([[1.0]] * 6)
    best = load_checkpoint(tmp_path / "ckpt", again)
    assert again.epochs_done == 4 and float(again.w) == 4.0
    assert best is not None and float(best["w"][0]) == 2.0


def test_the_monitor_refuses_a_non_finite_valid_metric(tmp_path: Path) -> None:
    toy = _Toy([[1.0]])
    state: dict[str, Any] = {"history": [], "best_epoch": None, "best_value": None, "bad": 0}
    monitor = EpochMonitor("toy", toy, state, history_path=tmp_path / "h.jsonl",
                           checkpoint_dir=None, valid_metrics=lambda e: {"valid_m": math.nan},
                           metric_key="valid_m")  # fmt: skip
    with pytest.raises(TrainingDivergedError, match="valid_m turned non-finite"):
        fit_epochs(toy, 1, n_steps=1, n_events=3, callback=monitor)
    assert state["history"] == []


def test_write_checkpoint_keeps_the_previous_best(tmp_path: Path) -> None:
    toy = _Toy([])
    state: dict[str, Any] = {"history": [], "best_epoch": 1, "best_value": 0.5, "bad": 0}
    write_checkpoint(tmp_path, toy, "toy", state, {"w": torch.ones(1)})
    toy.w += 5
    write_checkpoint(tmp_path, toy, "toy", state, None)
    best = load_checkpoint(tmp_path, _Toy([]))
    assert best is not None and float(best["w"][0]) == 1.0


def test_gru4rec_two_tower_and_autorec_train_through_the_trainer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = session_data([[0, 1, 2, 0, 1, 2]] * 6, n_items=3)
    ratings = Ratings.from_arrays(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]),
                                  np.array([4.0, 3.0, 5.0, 2.0]), n_users=2, n_items=2)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="sessionrec.training.trainer"):
        create("gru4rec", {"layers": [4], "n_epochs": 2, "batch_size": 2, "n_sample": 2}).fit(data)
        create("two-tower", {"dim": 4, "n_epochs": 2, "batch_size": 4}).fit(data)
        create_rating_model("autorec", {"hidden": [2], "n_epochs": 2}).fit(ratings)
    lines = [r.getMessage().split(":")[0] for r in caplog.records]
    for name in ("gru4rec", "two-tower", "autorec"):
        assert lines.count(f"{name} epoch 1") == 1 and lines.count(f"{name} epoch 2") == 1
