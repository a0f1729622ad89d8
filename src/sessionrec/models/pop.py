"""The simplest baselines: most popular (``pop``) and session popularity (``spop``).

``pop`` recommends the items with the most training events, whatever the session.
``spop`` (Ludewig & Jannach, "Evaluation of session-based recommendation algorithms", 2018)
recommends the items that occur most often in the current session, ties (and all items not in
the session) broken by training popularity: the count in the session, with equal counts
ordered by the items' training popularity rank (exactly: ``_sparse.with_tiebreak``, float64
scores). ``pop``'s scores are the training counts themselves (float32, exact below 2**24
events per item); items with equal counts stay tied. Neither learns order, so neither can
answer a cyclic session A→B→C→A correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch

from sessionrec.models._sparse import popularity_tiebreak, tiebreak_tensor, with_tiebreak
from sessionrec.models.base import EpochCallback, SessionModel
from sessionrec.prepare.data import SessionData


@dataclass(frozen=True)
class PopConfig:
    """``pop`` has no parameters."""


@dataclass(frozen=True)
class SPopConfig:
    """``spop`` has no parameters."""


class _Counts(SessionModel):
    """Shared persistence: both models keep only the (n_items,) training counts."""

    #: Neither model uses the order of events: they cannot learn a cyclic pattern.
    learns_order: ClassVar[bool] = False

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device=device)
        self.counts = torch.zeros(0, device=self.device)
        self._rank: torch.Tensor | None = None  # spop's popularity ranks, from the counts

    def fit(
        self,
        train: SessionData,
        valid: SessionData | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        self.n_items = train.n_items
        self.counts = torch.as_tensor(train.item_counts(), dtype=torch.float32, device=self.device)
        self._rank = None
        return self

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.counts = arrays["counts"].to(self.device, torch.float32)
        self._rank = None
        self.n_items = int(self.counts.shape[0])


class Pop(_Counts):
    """Most popular in train: score = the item's number of training events."""

    name = "pop"
    Config = PopConfig

    def start(self, batch_size: int) -> int:
        # The session does not matter: the state is only the batch size.
        return batch_size

    def reset(self, state: int, mask: torch.Tensor) -> int:
        return state

    def step(self, state: int, items: torch.Tensor) -> int:
        return state

    def score(self, state: int) -> torch.Tensor:
        return self.counts.unsqueeze(0).repeat(state, 1)

    def score_rows(self, state: int, rows: torch.Tensor) -> torch.Tensor:
        return self.score(int(rows.numel()))


class SPop(_Counts):
    """Session popularity: count in the current session, ties by training popularity."""

    name = "spop"
    Config = SPopConfig

    def _tiebreak(self) -> torch.Tensor:
        """(n_items,) popularity rank in (0, 1), computed once from the counts."""
        if self._rank is None:
            counts = self.counts.detach().cpu().numpy()
            self._rank = tiebreak_tensor(popularity_tiebreak(counts), self.device)
        return self._rank

    def start(self, batch_size: int) -> torch.Tensor:
        """(B, n_items) float32 counts of each item in each slot's session."""
        return torch.zeros(batch_size, self.n_items, device=self.device)

    def reset(self, state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        state[mask.to(self.device)] = 0.0
        return state

    def step(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(state.shape[0], device=self.device)
        state[rows, items.to(self.device)] += 1.0
        return state

    def score(self, state: torch.Tensor) -> torch.Tensor:
        """(B, n_items) float64: the session counts, equal ones ordered by popularity."""
        return with_tiebreak(state, self._tiebreak())

    def score_rows(self, state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.score(state[rows.to(self.device)])
