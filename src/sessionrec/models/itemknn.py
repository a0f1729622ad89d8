"""Item-to-item kNN on session co-occurrence (the baseline of Hidasi et al., ICLR 2016).

Each item is the binary vector of the training sessions it occurs in. The similarity of items
``i`` and ``j`` is their regularised cosine

    sim(i, j) = n(i, j) / (n(i)^alpha · n(j)^(1 − alpha) + lmbd)

where ``n(i, j)`` counts the sessions holding both and ``n(i)`` those holding ``i``
(``alpha = 0.5``, ``lmbd = 0`` is the plain cosine; ``lmbd`` damps pairs seen in few sessions).
Only the ``k`` most similar items of each item are kept, and a session is scored by the
similarities to its last item.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from sessionrec.errors import ConfigError
from sessionrec.models._lastitem import LastItemModel
from sessionrec.models._sparse import csr_from_coo, top_k_per_row
from sessionrec.prepare.data import SessionData


@dataclass(frozen=True)
class ItemKNNConfig:
    """Parameters of item-kNN.

    Attributes:
        k: neighbours kept per item (0 keeps every co-occurring item).
        lmbd: regularisation added to the denominator (GRU4Rec paper's baseline used 20).
        alpha: balance of the two items' supports in the denominator (0.5 = cosine).
        tie_epsilon: weight of the popularity tie-break (popularity rank scaled into (0, 1)).
    """

    k: int = 100
    lmbd: float = 20.0
    alpha: float = 0.5
    tie_epsilon: float = 1e-6

    def __post_init__(self) -> None:
        if self.k < 0 or self.lmbd < 0 or not 0 <= self.alpha <= 1:
            raise ConfigError("itemknn: k ≥ 0, lmbd ≥ 0 and 0 ≤ alpha ≤ 1 are required")


class ItemKNN(LastItemModel):
    """Item-to-item regularised cosine similarity over session occurrence."""

    name: ClassVar[str] = "itemknn"
    Config: ClassVar[type] = ItemKNNConfig
    #: co-occurrence is symmetric: which item follows which is not learned
    learns_order: ClassVar[bool] = False

    def _learn(self, train: SessionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg: ItemKNNConfig = self.config
        n = self.n_items
        sess = np.repeat(np.arange(train.n_sessions), train.lengths)
        indptr, indices, _ = csr_from_coo(
            sess, train.items, None, (train.n_sessions, n), binary=True
        )
        support = np.bincount(indices, minlength=n).astype(np.float64)
        indptr, indices, counts = _cooccurrence(indptr, indices, n)
        row = np.repeat(np.arange(n), np.diff(indptr))
        off_diagonal = row != indices
        row, indices, counts = row[off_diagonal], indices[off_diagonal], counts[off_diagonal]
        indptr = np.r_[0, np.cumsum(np.bincount(row, minlength=n))]
        sim = counts / (support[row] ** cfg.alpha * support[indices] ** (1 - cfg.alpha) + cfg.lmbd)
        return top_k_per_row(indptr, indices, sim, cfg.k)


def _cooccurrence(
    indptr: np.ndarray, indices: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of n(i, j) = XᵀX for the binary (sessions, items) matrix X given as CSR."""
    n_sess = len(indptr) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        x = torch.sparse_csr_tensor(
            torch.as_tensor(indptr),
            torch.as_tensor(indices),
            torch.ones(len(indices), dtype=torch.float64),
            size=(n_sess, n),
        )
        co = torch.sparse.mm(x.t().to_sparse_csr(), x)
    return (
        co.crow_indices().numpy().astype(np.int64),
        co.col_indices().numpy().astype(np.int64),
        co.values().numpy(),
    )
