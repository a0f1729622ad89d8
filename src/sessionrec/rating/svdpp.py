"""SVD++: biased matrix factorisation with implicit feedback (Koren, KDD 2008).

``r̂(u, i) = μ + b_u + b_i + q_i · (p_u + |N(u)|^-½ Σ_{j ∈ N(u)} y_j)``, where ``N(u)`` is
the set of items ``u`` rated in training (that it rated, whatever the rating, is the implicit
signal). Squared error plus ``reg`` times the squared norms of every parameter a rating touches.
Defaults are Surprise's ``SVDpp``: 20 factors, 20 epochs, learning rate 0.007, reg 0.02,
factors drawn from N(0, 0.1).

Surprise updates after every rating, each update also moving the ``y_j`` of all the user's
items. Here one update covers a shuffled minibatch of ``batch_size`` ratings (gradients summed,
as in :mod:`sessionrec.rating.svd`): the implicit sums are computed once per distinct user of
the batch from the ``y`` at the start of the batch, and each user's ``y_j`` receive the summed
steps of its ratings in the batch, scattered with ``index_add_``. With ``batch_size=1`` this is
the per-rating algorithm (a test pins it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from sessionrec.models.base import EpochCallback
from sessionrec.rating.data import Ratings
from sessionrec.rating.svd import SVD, SVDConfig


@dataclass(frozen=True)
class SVDppConfig(SVDConfig):
    """SVD's parameters with Surprise's SVDpp defaults (20 factors, learning rate 0.007).

    ``batch_size`` is the speed knob: a batch visits each distinct user's N(u) once, so larger
    batches do less work (ML-100K fold 1: RMSE 0.9211 in 88 s at 64, 0.9211 in 44 s at 1,024,
    0.9212 in 14 s at 4,096) — but steps are summed, so on small or dense data large batches
    with a large ``learning_rate`` diverge; the default stays at SVD's 64.
    """

    factors: int = 20
    learning_rate: float = 0.007


class SVDpp(SVD):
    """SVD++ with minibatch SGD (torch scatter updates on float64 arrays), seeded; prediction
    and persistence are SVD's, with the implicit term added to the user's vector."""

    name = "svdpp"
    Config = SVDppConfig
    config: SVDppConfig
    test_params: ClassVar[dict[str, Any]] = {"factors": 4, "n_epochs": 3}

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.implicit_factors = np.zeros((0, 0))  # y_j
        self.user_implicit = np.zeros((0, 0))  # |N(u)|^-½ Σ y_j, from the current y
        self._implicit_stale = True

    def _fit(self, train: Ratings, valid: Ratings | None, callback: EpochCallback | None) -> None:
        c = self.config
        rng = np.random.default_rng(c.seed)
        nu, ni, f = self.n_users, self.n_items, c.factors
        self.user_bias, self.item_bias = np.zeros(nu), np.zeros(ni)
        self.user_factors = rng.normal(0.0, c.init_std, (nu, f))
        self.item_factors = rng.normal(0.0, c.init_std, (ni, f))
        self.implicit_factors = rng.normal(0.0, c.init_std, (ni, f))
        bu, bi = torch.from_numpy(self.user_bias), torch.from_numpy(self.item_bias)
        P, Q = torch.from_numpy(self.user_factors), torch.from_numpy(self.item_factors)
        Y = torch.from_numpy(self.implicit_factors)
        users, items = torch.from_numpy(train.users), torch.from_numpy(train.items)
        r = torch.from_numpy(train.ratings.astype(np.float64))
        # N(u) as CSR: the items of user u are rated_items[start[u]:start[u + 1]].
        by_user = np.argsort(train.users, kind="stable")
        rated_items = torch.from_numpy(train.items[by_user])
        degree = torch.from_numpy(np.bincount(train.users, minlength=nu))
        start = torch.cat([torch.zeros(1, dtype=torch.long), degree.cumsum(0)])
        inv_sqrt = degree.clamp(min=1).double().rsqrt()
        mu, lr, reg = self.global_mean, c.learning_rate, c.reg
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small scattered ops: extra threads only add overhead
        try:
            for epoch in range(1, c.n_epochs + 1):
                started = time.perf_counter()
                order = torch.from_numpy(rng.permutation(len(r)))
                sq = 0.0
                for rows in order.split(c.batch_size):
                    u, i = users.index_select(0, rows), items.index_select(0, rows)
                    # Each distinct user of the batch once: its implicit sum, then the summed
                    # steps of its ratings to its y_j (the same sums as rating by rating).
                    uniq, inv = torch.unique(u, return_inverse=True)
                    n_u = degree.index_select(0, uniq)
                    owner = torch.repeat_interleave(torch.arange(len(uniq)), n_u)
                    first = torch.repeat_interleave(start.index_select(0, uniq), n_u)
                    within = torch.arange(len(owner)) - torch.repeat_interleave(
                        n_u.cumsum(0) - n_u, n_u
                    )
                    # (pairs,) the items j ∈ N(u) per user (``index_select``: torch's
                    # advanced indexing of rows took 2.5 times as long on CPU)
                    js = rated_items.index_select(0, first + within)
                    y_js = Y.index_select(0, js)
                    implicit_u = torch.zeros(len(uniq), f, dtype=torch.float64)
                    implicit_u.index_add_(0, owner, y_js)
                    implicit_u.mul_(inv_sqrt.index_select(0, uniq).unsqueeze(1))
                    implicit = implicit_u.index_select(0, inv)  # (B, F)
                    pu, qi = P.index_select(0, u), Q.index_select(0, i)
                    pred = mu + (qi * (pu + implicit)).sum(1)
                    if c.biased:
                        bu_u, bi_i = bu.index_select(0, u), bi.index_select(0, i)
                        pred += bu_u + bi_i
                    err = r.index_select(0, rows) - pred
                    sq += float(err @ err)
                    e = err[:, None]
                    if c.biased:
                        bu.index_add_(0, u, lr * (err - reg * bu_u))
                        bi.index_add_(0, i, lr * (err - reg * bi_i))
                    P.index_add_(0, u, lr * (e * qi - reg * pu))
                    Q.index_add_(0, i, lr * (e * (pu + implicit) - reg * qi))
                    step_u = torch.zeros(len(uniq), f, dtype=torch.float64)
                    step_u.index_add_(0, inv, e * qi * inv_sqrt.index_select(0, u).unsqueeze(1))
                    times = torch.bincount(inv, minlength=len(uniq)).double()  # ratings per user
                    per_pair = (
                        step_u.index_select(0, owner)
                        - reg * times.index_select(0, owner).unsqueeze(1) * y_js
                    )
                    Y.index_add_(0, js, lr * per_pair)
                self._implicit_stale = True  # y moved: valid RMSE recomputes the sums
                if self._epoch_done(callback, epoch, sq / len(r), started, len(r), valid):
                    break
        finally:
            torch.set_num_threads(threads)

    def _implicit(self) -> np.ndarray:
        """(n_users, F) |N(u)|^-½ Σ_{j ∈ N(u)} y_j over the training ratings."""
        y = torch.from_numpy(self.implicit_factors)
        out = torch.zeros(self.n_users, y.shape[1], dtype=y.dtype)
        out.index_add_(0, torch.from_numpy(self.train_users), y[torch.from_numpy(self.train_items)])
        degree = np.bincount(self.train_users, minlength=self.n_users)
        return out.numpy() / np.sqrt(np.maximum(degree, 1))[:, None]

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self._implicit_stale:  # after an epoch or a load: the sums of the current y
            self.user_implicit = self._implicit()
            self._implicit_stale = False
        return super().predict(users, items)

    def _user_vectors(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] + self.user_implicit[users]

    def _arrays(self) -> dict[str, torch.Tensor]:
        return {**super()._arrays(), "implicit_factors": torch.from_numpy(self.implicit_factors)}

    def _load_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        super()._load_arrays(arrays)
        self.implicit_factors = arrays["implicit_factors"].numpy()
        self._implicit_stale = True
