"""Streaming machinery for models that score from the session's last item alone.

Markov, sequential rules and item-kNN all learn an (n_items, n_items) sparse matrix ``M`` and
score a session as the row of its last item, ``M[last]`` (float32), with equal scores ordered
by training popularity, exactly (``_sparse.with_tiebreak``: the scores come back as float64).
Only how ``M`` is learned differs, and that lives in each model's file.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Self

import numpy as np
import torch

from sessionrec.models._sparse import (
    CSR,
    expand_rows,
    popularity_tiebreak,
    tiebreak_tensor,
    with_tiebreak,
)
from sessionrec.models.base import EpochCallback, SessionModel
from sessionrec.prepare.data import SessionData


class LastItemModel(SessionModel):
    """Base of last-item models. State: (B,) int64 last item per slot, −1 for an empty session.

    Subclasses' configs have a ``tiebreak`` field (order equal scores by training popularity)
    and implement ``_learn``.
    """

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device=device)
        self.matrix: CSR | None = None
        self.tiebreak: torch.Tensor | None = None
        #: (n_items,) the score of an item the last item's row does not hold (its tie-break)
        self._zero_row: torch.Tensor | None = None

    @abstractmethod
    def _learn(self, train: SessionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR components (indptr, indices, data) of the (n_items, n_items) score matrix."""

    def fit(
        self,
        train: SessionData,
        valid: SessionData | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        """Count on ``train`` (one pass, no epochs: ``valid`` and ``callback`` are unused)."""
        self.n_items = train.n_items
        indptr, indices, data = self._learn(train)
        self.matrix = CSR.from_numpy(indptr, indices, data, self.n_items, self.device)
        self.tiebreak = tiebreak_tensor(popularity_tiebreak(train.item_counts()), self.device)
        self._zero_row = None
        return self

    # -- streaming --------------------------------------------------------------------------
    def start(self, batch_size: int) -> torch.Tensor:
        return torch.full((batch_size,), -1, dtype=torch.long, device=self.device)

    def reset(self, state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return state.masked_fill(mask.to(state.device), -1)

    def step(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return items.to(self.device, torch.long).clone()

    def score(self, state: torch.Tensor) -> torch.Tensor:
        """(B, n_items): the last item's row of the matrix; float64 with the popularity
        tie-break (``tiebreak``), float32 without."""
        if self.matrix is None or self.tiebreak is None:
            raise RuntimeError(f"{self.name}: call fit() or load_from() before scoring")
        if not self.config.tiebreak:
            return self.matrix.gather_rows(state)
        # with_tiebreak is elementwise: computed on the row's stored entries only, every other
        # item takes its precomputed zero-score value (the same numbers as on the dense rows,
        # for a fraction of the passes over (B, n_items))
        if self._zero_row is None:
            zeros = torch.zeros(1, self.n_items, device=self.device)
            self._zero_row = with_tiebreak(zeros, self.tiebreak)[0]
        out = self._zero_row.unsqueeze(0).repeat(state.shape[0], 1)
        slots = torch.nonzero(state >= 0).view(-1)
        flat, owner = expand_rows(self.matrix.indptr, state[slots])
        cols = self.matrix.indices[flat]
        values = with_tiebreak(self.matrix.data[flat], self.tiebreak[cols])
        out[slots[owner], cols] = values.to(out.dtype)
        return out

    def score_rows(self, state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.score(state[rows.to(state.device)])

    # -- persistence ------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, torch.Tensor]:
        if self.matrix is None or self.tiebreak is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit()")
        return {**self.matrix.arrays("matrix"), "tiebreak": self.tiebreak}

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.matrix = CSR.from_arrays(arrays, "matrix", self.device)
        self.tiebreak = tiebreak_tensor(arrays["tiebreak"], self.device)
        self.n_items = self.matrix.n_cols
        self._zero_row = None
