"""Implicit-feedback ALS (Hu, Koren & Volinsky, 2008) trained by the ``implicit`` library.

Confidence ``1 + alpha · count`` on the session×item (or user×item) count matrix; conjugate
gradient solves. We keep the item factors and score a session by the mean of its items'
factors (see ``_factors``). One ALS sweep per ``implicit`` fit call, so the epoch callback
sees every epoch and may stop training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from sessionrec.models._factors import FactorSessionModel, interaction_matrix
from sessionrec.models.base import EpochCallback
from sessionrec.prepare.data import SessionData


@dataclass(frozen=True)
class ALSConfig:
    factors: int = 100
    epochs: int = 15
    reg: float = 0.01
    alpha: float = 1.0
    rows: str = "session"
    threads: int = 1
    seed: int = 0


class ALS(FactorSessionModel):
    """Weighted-matrix-factorisation ALS via ``implicit``; sessions scored by mean item factor."""

    name = "als"
    Config = ALSConfig
    config: ALSConfig
    tasks = frozenset({"next-item", "top-n"})
    test_params: ClassVar[dict[str, Any]] = {"factors": 8, "epochs": 2}

    def fit(
        self,
        train: SessionData,
        valid: SessionData | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        c = self.config
        self.n_items = train.n_items
        matrix = interaction_matrix(train, c.rows)
        # implicit parallelises over rows itself; a BLAS thread pool on top only contends.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=c.factors,
                regularization=c.reg,
                alpha=c.alpha,
                dtype=np.float32,
                iterations=1,
                calculate_training_loss=True,
                random_state=np.random.default_rng(c.seed),
                num_threads=c.threads,
            )
        progress: dict[str, float] = {}

        def record(_iteration: int, _elapsed: float, loss: float) -> None:
            progress["train_loss"] = float(loss)

        self._fit_epochs(
            model,
            matrix,
            c.epochs,
            record,
            progress,
            lambda q: self._set_factors(q, None),
            callback,
        )
        return self
