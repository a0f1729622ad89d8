"""Global mean plus regularised user and item biases, fitted by alternating least squares.

``r̂(u, i) = μ + b_u + b_i`` (Koren, "Factor in the neighbors", 2010, section 2.1); the ALS
updates and defaults follow Surprise's ``BaselineOnly(bsl_options={"method": "als"})``:
10 epochs, ``reg_i = 10``, ``reg_u = 15``, item biases first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from sessionrec.models.base import EpochCallback
from sessionrec.rating.base import RatingModel
from sessionrec.rating.data import Ratings


@dataclass(frozen=True)
class BaselineConfig:
    n_epochs: int = 10
    reg_user: float = 15.0
    reg_item: float = 10.0


class Baseline(RatingModel):
    """Biases by ALS: each half-step is a closed-form ridge solution, vectorised by bincount."""

    name = "baseline"
    Config = BaselineConfig
    config: BaselineConfig
    test_params: ClassVar[dict[str, Any]] = {"n_epochs": 3}

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.user_bias = np.zeros(0, dtype=np.float64)
        self.item_bias = np.zeros(0, dtype=np.float64)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: EpochCallback | None) -> None:
        c = self.config
        u, i = train.users, train.items
        r = train.ratings.astype(np.float64) - self.global_mean
        n_u = np.bincount(u, minlength=self.n_users)
        n_i = np.bincount(i, minlength=self.n_items)
        self.user_bias = np.zeros(self.n_users)
        self.item_bias = np.zeros(self.n_items)
        for epoch in range(1, c.n_epochs + 1):
            started = time.perf_counter()
            self.item_bias = np.bincount(i, r - self.user_bias[u], self.n_items) / (
                c.reg_item + n_i
            )
            self.user_bias = np.bincount(u, r - self.item_bias[i], self.n_users) / (
                c.reg_user + n_u
            )
            err = r - self.user_bias[u] - self.item_bias[i]
            if self._epoch_done(callback, epoch, float(np.mean(err**2)), started, len(r), valid):
                break

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        # Unknown users/items have no ratings, so their ALS bias is 0 by construction.
        bu = np.where(users >= 0, self.user_bias[np.maximum(users, 0)], 0.0)
        bi = np.where(items >= 0, self.item_bias[np.maximum(items, 0)], 0.0)
        return self.global_mean + bu + bi

    def _arrays(self) -> dict[str, torch.Tensor]:
        return {
            "user_bias": torch.from_numpy(self.user_bias),
            "item_bias": torch.from_numpy(self.item_bias),
        }

    def _load_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.user_bias = arrays["user_bias"].numpy()
        self.item_bias = arrays["item_bias"].numpy()
