"""Pinned numbers of short fits of the three epoch-trained models (gru4rec, two-tower, autorec).

Written before their epoch loops moved into one trainer (``sessionrec.training.trainer``): the
same seed must give the same per-epoch losses and the same weights as before, and a callback
that asks to stop must stop after that epoch. The figures were printed by the code before the
refactor; the tolerance only absorbs a different CPU's float rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from _helpers import session_data

from sessionrec.models import create
from sessionrec.rating import Ratings, create_rating_model


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sessions() -> Any:
    rng = np.random.default_rng(0)
    sessions = []
    for _ in range(60):
        g, start = int(rng.integers(0, 4)), int(rng.integers(0, 3))
        sessions.append([g * 3 + (start + k) % 3 for k in range(int(rng.integers(2, 7)))])
    return session_data(sessions, n_items=12)


def _ratings() -> Ratings:
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 20
    p, q = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    full = np.clip(3 + p @ q.T * 0.7, 1, 5)
    u, i = np.nonzero(rng.random((n_users, n_items)) < 0.5)
    return Ratings.from_arrays(u, i, np.round(full[u, i] * 2) / 2, n_users=n_users, n_items=n_items)


def _checksum(arrays: dict[str, torch.Tensor]) -> float:
    """Σ|w| over every floating array (float64): one number that moves with any weight."""
    return float(
        sum(v.detach().double().abs().sum() for v in arrays.values() if v.is_floating_point())
    )


GRU = {"layers": [16], "n_epochs": 3, "batch_size": 8, "n_sample": 16, "loss": "bpr-max",
       "elu_param": 0.5, "momentum": 0.3, "dropout_p_hidden": 0.2, "seed": 3}  # fmt: skip
TT = {"dim": 16, "n_epochs": 3, "batch_size": 32, "learning_rate": 0.01, "extra_negatives": 4,
      "seed": 3}  # fmt: skip
AUTO = {"hidden": [8], "n_epochs": 3, "batch_size": 4, "dropout": 0.1, "seed": 3}

#: (per-epoch train losses, weight checksum), printed by the loops before the refactor.
#: GRU4Rec's were printed again when its step drew its dropout masks from numpy's generator
#: (another random stream; the written-out step equals autograd's on the same masks:
#: tests/test_gru4rec.py::test_written_out_backward_takes_autograds_steps).
PINNED: dict[str, tuple[list[float], float]] = {
    "gru4rec": ([0.5803168338278065, 0.5589530778967816, 0.5339948820031207], 408.6694693985628),
    "two-tower": ([4.284547249476115, 1.743531088034312, 0.9052915324767431], 583.1858846505638),
    "autorec": ([10.561175622175794, 10.468698322149935, 10.27806468790832], 930.7741803138051),
}


def _fit(name: str, stop_after: int | None = None) -> tuple[list[float], float]:
    records: list[dict[str, Any]] = []

    def callback(r: dict[str, Any]) -> bool:
        records.append(r)
        return stop_after is not None and r["epoch"] >= stop_after

    if name == "autorec":
        r = create_rating_model("autorec", AUTO).fit(_ratings(), callback=callback)
        arrays = r.state_arrays()
    else:
        m = create(name, GRU if name == "gru4rec" else TT).fit(_sessions(), callback=callback)
        arrays = m.state_arrays()
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))
    for r in records:
        assert {"epoch", "train_loss", "seconds", "events_per_second"} <= set(r)
    return [r["train_loss"] for r in records], _checksum(arrays)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_same_seed_same_losses_and_weights_as_before(name: str) -> None:
    losses, checksum = _fit(name)
    want_losses, want_checksum = PINNED[name]
    assert losses == pytest.approx(want_losses, rel=1e-5)
    assert checksum == pytest.approx(want_checksum, rel=1e-5)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_a_callback_that_returns_true_stops_after_that_epoch(name: str) -> None:
    losses, _ = _fit(name, stop_after=2)
    assert losses == pytest.approx(PINNED[name][0][:2], rel=1e-5)
