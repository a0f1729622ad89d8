"""Implicit-feedback ALS (Hu, Koren & Volinsky, 2008) trained by the ``implicit`` library.

Confidence ``1 + alpha · count`` on the session×item (or user×item) count matrix; conjugate
gradient solves. We keep the item factors and score a session by the mean of its items'
factors (see ``_factors``). One ALS sweep per ``implicit`` fit call, so the epoch callback
sees every epoch and may stop training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sessionrec.models._factors import FactorSessionModel


@dataclass(frozen=True)
class ALSConfig:
    factors: int = 100
    n_epochs: int = 15
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
    test_params: ClassVar[dict[str, Any]] = {"factors": 8, "n_epochs": 2}

    def _implicit_model(self) -> Any:
        module = self._implicit_module("als")
        c = self.config
        threads = {} if self._on_gpu(module) else {"num_threads": c.threads}
        return module.AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.reg,
            alpha=c.alpha,
            dtype=np.float32,
            iterations=1,
            calculate_training_loss=True,
            random_state=np.random.default_rng(c.seed),
            **threads,
        )

    def _loss_recorder(self, matrix: Any, progress: dict[str, float]) -> Callable[..., None]:
        def record(_iteration: int, _elapsed: float, loss: float) -> None:
            progress["train_loss"] = float(loss)

        return record
