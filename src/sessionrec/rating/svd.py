"""Biased matrix factorisation trained by SGD ("Funk SVD"; Koren, Bell & Volinsky, 2009).

``r̂(u, i) = μ + b_u + b_i + p_u · q_i``, minimising the squared error plus
``reg · (b_u² + b_i² + |p_u|² + |q_i|²)`` per rating. Defaults are Surprise's ``SVD``:
100 factors, 20 epochs, learning rate 0.005, reg 0.02, factors drawn from N(0, 0.1).

Surprise updates after every rating in a compiled (Cython) loop; here one update covers a
small shuffled minibatch (``batch_size`` ratings, gradients summed, not averaged, so the step
per rating is the same), scattered with ``torch.index_add_`` on views of the numpy arrays. With small batches the two coincide
up to the order of updates within a batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from sessionrec.models.base import EpochCallback
from sessionrec.rating.base import RatingModel, known_mask
from sessionrec.rating.data import Ratings


@dataclass(frozen=True)
class SVDConfig:
    factors: int = 100
    n_epochs: int = 20
    learning_rate: float = 0.005
    reg: float = 0.02
    init_std: float = 0.1
    batch_size: int = 64
    biased: bool = True
    seed: int = 0


class SVD(RatingModel):
    """Funk SVD with biases, minibatch SGD in numpy, seeded."""

    name = "svd"
    Config = SVDConfig
    config: SVDConfig
    test_params: ClassVar[dict[str, Any]] = {"factors": 4, "n_epochs": 3}

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.user_bias = np.zeros(0)
        self.item_bias = np.zeros(0)
        self.user_factors = np.zeros((0, 0))
        self.item_factors = np.zeros((0, 0))

    def _fit(self, train: Ratings, valid: Ratings | None, callback: EpochCallback | None) -> None:
        c = self.config
        rng = np.random.default_rng(c.seed)
        self.user_bias = np.zeros(self.n_users)
        self.item_bias = np.zeros(self.n_items)
        self.user_factors = rng.normal(0.0, c.init_std, (self.n_users, c.factors))
        self.item_factors = rng.normal(0.0, c.init_std, (self.n_items, c.factors))
        # torch views of the numpy arrays (shared memory): index_add_ is several times
        # faster than np.add.at for these small scattered updates.
        bu, bi = torch.from_numpy(self.user_bias), torch.from_numpy(self.item_bias)
        P, Q = torch.from_numpy(self.user_factors), torch.from_numpy(self.item_factors)
        users, items = torch.from_numpy(train.users), torch.from_numpy(train.items)
        r = torch.from_numpy(train.ratings.astype(np.float64))
        mu, lr, reg = self.global_mean, c.learning_rate, c.reg
        # Tiny scattered ops: intra-op threads only add overhead (20x slower on a busy
        # 2-core machine), so run single-threaded and restore the caller's setting.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for epoch in range(1, c.n_epochs + 1):
                started = time.perf_counter()
                order = torch.from_numpy(rng.permutation(len(r)))
                sq = 0.0
                for rows in order.split(c.batch_size):
                    u, i = users.index_select(0, rows), items.index_select(0, rows)
                    pu, qi = P.index_select(0, u), Q.index_select(0, i)
                    pred = mu + (pu * qi).sum(1)
                    if c.biased:
                        bu_u, bi_i = bu.index_select(0, u), bi.index_select(0, i)
                        pred += bu_u + bi_i
                    err = r.index_select(0, rows) - pred
                    sq += float(err @ err)
                    if c.biased:
                        bu.index_add_(0, u, lr * (err - reg * bu_u))
                        bi.index_add_(0, i, lr * (err - reg * bi_i))
                    e = err[:, None]
                    P.index_add_(0, u, lr * (e * qi - reg * pu))
                    Q.index_add_(0, i, lr * (e * pu - reg * qi))
                if self._epoch_done(callback, epoch, sq / len(r), started, len(r), valid):
                    break
        finally:
            torch.set_num_threads(threads)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        ku = known_mask(users, self.n_users, self.train_users)
        ki = known_mask(items, self.n_items, self.train_items)
        u, i = np.maximum(users, 0), np.maximum(items, 0)
        pred = np.full(len(users), self.global_mean)
        if self.config.biased:
            pred += np.where(ku, self.user_bias[u], 0.0) + np.where(ki, self.item_bias[i], 0.0)
        both = ku & ki
        pred[both] += (self._user_vectors(u[both]) * self.item_factors[i[both]]).sum(1)
        return pred

    def _user_vectors(self, users: np.ndarray) -> np.ndarray:
        """(N, F) the vectors item factors meet: p_u (SVD++ adds its implicit term)."""
        return self.user_factors[users]

    def _arrays(self) -> dict[str, torch.Tensor]:
        return {
            "user_bias": torch.from_numpy(self.user_bias),
            "item_bias": torch.from_numpy(self.item_bias),
            "user_factors": torch.from_numpy(self.user_factors),
            "item_factors": torch.from_numpy(self.item_factors),
        }

    def _load_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.user_bias = arrays["user_bias"].numpy()
        self.item_bias = arrays["item_bias"].numpy()
        self.user_factors = arrays["user_factors"].numpy()
        self.item_factors = arrays["item_factors"].numpy()
