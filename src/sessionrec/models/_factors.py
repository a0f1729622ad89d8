"""Shared infrastructure of item-factor models (BPR, ALS): a session's query is the mean of its
items' factors, as the GRU4Rec paper's BPR-MF baseline scores sessions (Hidasi et al., 2016).

Streaming state per slot: the running sum of the session's item factors and its length, so a
step is one gather and one add.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
import torch

from sessionrec.errors import ConfigError
from sessionrec.models.base import EpochCallback, SessionModel
from sessionrec.prepare.data import SessionData

log = logging.getLogger(__name__)


def interaction_matrix(data: SessionData, rows: str) -> sp.csr_matrix:
    """(R, n_items) csr counts: R sessions (``rows="session"``) or users (``rows="user"``)."""
    if rows == "user":
        if data.users is None:
            raise ConfigError("rows='user' needs user ids in the prepared data")
        _, row_of_session = np.unique(data.users, return_inverse=True)
    elif rows == "session":
        row_of_session = np.arange(data.n_sessions)
    else:
        raise ConfigError(f"rows must be 'session' or 'user', not {rows!r}")
    row = np.repeat(row_of_session, data.lengths)
    m = sp.csr_matrix(
        (np.ones(data.n_events, dtype=np.float32), (row, data.items)),
        shape=(int(row_of_session.max()) + 1 if len(row) else 0, data.n_items),
    )
    m.sum_duplicates()
    return m


class FactorSessionModel(SessionModel):
    """Scores ``mean(q_j for j in session) · q_i + b_i`` for every item i."""

    # The mean of a session's item factors forgets order: A→B and B→A look alike.
    learns_order = False

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.item_factors = torch.zeros(0, 0)  # (n_items, F)
        self.item_bias = torch.zeros(0)  # (n_items,)

    # -- training: one implicit iteration per epoch -------------------------------------------
    def _implicit_model(self) -> Any:
        """The ``implicit`` model, configured for one iteration per ``fit`` call."""
        raise NotImplementedError

    def _implicit_module(self, kind: str) -> Any:
        """``implicit.gpu.<kind>`` on a CUDA device when implicit was built with CUDA, else
        ``implicit.cpu.<kind>`` (PyPI's implicit wheels are CPU-only: CUDA needs implicit built
        with it, e.g. from conda-forge)."""
        from sessionrec._optional import require

        if self.device.type == "cuda":
            gpu = require("implicit.gpu")
            if gpu.HAS_CUDA:
                return require(f"implicit.gpu.{kind}")
            log.warning(
                "implicit was built without CUDA: %s trains on the CPU (scoring stays on %s)",
                self.name,
                self.device,
            )
        return require(f"implicit.cpu.{kind}")

    def _on_gpu(self, module: Any) -> bool:
        return bool(module.__name__.startswith("implicit.gpu"))

    def _loss_recorder(self, matrix: Any, progress: dict[str, float]) -> Callable[..., None]:
        """implicit's per-iteration callback, storing this epoch's ``train_loss`` in
        ``progress``."""
        raise NotImplementedError

    def _take_factors(self, factors: np.ndarray) -> None:
        """Install implicit's fitted item factors (BPR appends the bias as a last column)."""
        self._set_factors(factors, None)

    def fit(
        self,
        train: SessionData,
        valid: SessionData | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        """Fit on the session×item (``rows="session"``) or user×item count matrix, one
        ``implicit`` iteration per epoch so the callback sees every epoch and may stop."""
        from sessionrec._optional import require

        threadpool_limits = require("threadpoolctl").threadpool_limits
        require("implicit")  # before any work: a missing extra is the first thing said
        config: Any = self.config
        self.n_items = train.n_items
        matrix = interaction_matrix(train, config.rows)
        # implicit parallelises over rows itself; a BLAS thread pool on top only contends.
        with threadpool_limits(1, "blas"):
            model = self._implicit_model()
        progress: dict[str, float] = {}
        record = self._loss_recorder(matrix, progress)
        for epoch in range(1, config.n_epochs + 1):
            started = time.perf_counter()
            with threadpool_limits(1, "blas"):
                model.fit(matrix, show_progress=False, callback=record)
            factors = model.item_factors  # an implicit.gpu Matrix on CUDA
            self._take_factors(
                factors.to_numpy() if hasattr(factors, "to_numpy") else np.asarray(factors)
            )
            seconds = time.perf_counter() - started
            rec: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": progress.get("train_loss", float("nan")),
                "seconds": seconds,
                "events_per_second": matrix.nnz / max(seconds, 1e-9),
            }
            if callback is not None and callback(rec):
                break
        return self

    def _set_factors(self, factors: np.ndarray, bias: np.ndarray | None) -> None:
        self.item_factors = torch.as_tensor(np.ascontiguousarray(factors), dtype=torch.float32).to(
            self.device
        )
        b = np.zeros(len(factors), dtype=np.float32) if bias is None else bias
        self.item_bias = torch.as_tensor(np.ascontiguousarray(b), dtype=torch.float32).to(
            self.device
        )

    def start(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.item_factors.shape[1]
        return (
            torch.zeros(batch_size, f, device=self.device),
            torch.zeros(batch_size, device=self.device),
        )

    def reset(
        self, state: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        total, count = state
        keep = (~mask).to(self.device)
        return total * keep[:, None], count * keep

    def step(
        self, state: tuple[torch.Tensor, torch.Tensor], items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        total, count = state
        return total + self.item_factors[items.to(self.device)], count + 1

    def score(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        total, count = state
        query = total / count.clamp(min=1)[:, None]  # (B, F)
        return query @ self.item_factors.T + self.item_bias  # (B, n_items)

    def score_rows(
        self, state: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor
    ) -> torch.Tensor:
        rows = rows.to(self.device)
        return self.score((state[0][rows], state[1][rows]))

    # -- vectors (sessionrec.ann): score = [mean, 1] · [factors, bias] ------------------------
    def query_vectors(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, F+1) the mean of each session's item factors, then a 1 that meets the bias."""
        total, count = state
        query = total / count.clamp(min=1).unsqueeze(1)
        return torch.cat([query, torch.ones(len(query), 1, device=query.device)], dim=1)

    def item_vectors(self) -> torch.Tensor:
        """(n_items, F+1) the item factors with the item bias as the last column."""
        return torch.cat([self.item_factors, self.item_bias[:, None]], dim=1)

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return {"item_factors": self.item_factors, "item_bias": self.item_bias}

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.item_factors = arrays["item_factors"].to(self.device)
        self.item_bias = arrays["item_bias"].to(self.device)
