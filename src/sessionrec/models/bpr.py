"""BPR matrix factorisation (Rendle et al., 2009) trained by the ``implicit`` library.

``implicit`` learns user (or session) and item factors with SGD on sampled (positive,
negative) pairs; we keep the item factors and bias and score a session by the mean of its
items' factors (see ``_factors``). One ``implicit`` epoch per ``fit`` call, so the epoch
callback sees every epoch and may stop training. ``threads=1`` (the default) keeps runs
bit-reproducible: with more threads implicit's lock-free (Hogwild) updates depend on timing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sessionrec.models._factors import FactorSessionModel


@dataclass(frozen=True)
class BPRConfig:
    factors: int = 100
    n_epochs: int = 100
    learning_rate: float = 0.01
    reg: float = 0.01
    rows: str = "session"
    verify_negative_samples: bool = True
    threads: int = 1
    seed: int = 0


class BPR(FactorSessionModel):
    """BPR-MF via ``implicit``; a session is scored by the mean of its items' factors."""

    name = "bpr"
    Config = BPRConfig
    config: BPRConfig
    tasks = frozenset({"next-item", "top-n"})
    test_params: ClassVar[dict[str, Any]] = {"factors": 8, "n_epochs": 3}

    def _implicit_model(self) -> Any:
        module = self._implicit_module("bpr")
        c = self.config
        threads = {} if self._on_gpu(module) else {"num_threads": c.threads}
        return module.BayesianPersonalizedRanking(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.reg,
            dtype=np.float32,
            iterations=1,
            verify_negative_samples=c.verify_negative_samples,
            # A Generator, not an int: an int would re-seed each one-epoch fit identically.
            random_state=np.random.default_rng(c.seed),
            **threads,
        )

    def _loss_recorder(self, matrix: Any, progress: dict[str, float]) -> Callable[..., None]:
        def record(_epoch: int, _elapsed: float, correct: int, skipped: int) -> None:
            progress["train_loss"] = 1.0 - correct / max(matrix.nnz - skipped, 1)

        return record

    def _take_factors(self, factors: np.ndarray) -> None:
        # implicit appends the item bias as the last factor column (the user side holds 1).
        self._set_factors(factors[:, :-1], factors[:, -1])
