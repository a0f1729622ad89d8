"""First-order Markov chain: the next item follows from the last one alone.

``score(next = j | last = i) = C[i, j]``, the number of times ``j`` directly followed ``i`` in a
training session (row-normalised to transition probabilities with ``normalize``, which leaves
each row's order unchanged). Items never seen after ``i`` — and sessions with no item yet — are
ordered by training popularity (``tiebreak``; exact, see ``_sparse.with_tiebreak``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sessionrec.models._lastitem import LastItemModel
from sessionrec.models._sparse import csr_from_coo, successor_pairs
from sessionrec.prepare.data import SessionData


@dataclass(frozen=True)
class MarkovConfig:
    """Parameters of the first-order Markov chain.

    Attributes:
        normalize: divide each row by its total (transition probabilities) instead of raw
            counts; the ranking of one row does not change, only the scale of the scores.
        tiebreak: order items with equal scores by training popularity, exactly (below the
            resolution of the float32 scores, so it never reorders what the scores decide;
            ``_sparse.with_tiebreak``); false leaves them tied.
    """

    normalize: bool = False
    tiebreak: bool = True


class Markov(LastItemModel):
    """First-order Markov chain over consecutive items of training sessions."""

    name: ClassVar[str] = "markov"
    Config: ClassVar[type] = MarkovConfig

    def _learn(self, train: SessionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b, _ = successor_pairs(train, 1)
        indptr, indices, data = csr_from_coo(a, b, None, (self.n_items, self.n_items))
        if self.config.normalize and len(data):
            row = np.repeat(np.arange(self.n_items), np.diff(indptr))
            data = data / np.bincount(row, weights=data, minlength=self.n_items)[row]
        return indptr, indices, data
