"""Item-to-item kNN on session co-occurrence (the baseline of Hidasi et al., ICLR 2016).

A session is scored by the similarities of every item to its last item; only the ``k`` most
similar items of each item are kept. Two similarity formulas (``form``):

``sessions`` (the default): each item is the binary vector of the training sessions it occurs
in, and the similarity is a regularised cosine with ``lmbd`` added to the denominator,

    sim(i, j) = n(i, j) / (n(i)^alpha · n(j)^(1 − alpha) + lmbd)

where ``n(i, j)`` counts the sessions holding both and ``n(i)`` those holding ``i``
(``alpha = 0.5``, ``lmbd = 0`` is the plain cosine; ``lmbd`` damps pairs seen in few sessions).

``gru4rec`` (preset ``gru4rec``): the formula of the GRU4Rec baselines' ``ItemKNN``
(github.com/hidasib/GRU4Rec, ``baselines.py``), on event counts with ``lmbd`` added to each
support,

    sim(i, j) = c(i, j) / ((s(i) + lmbd)^alpha · (s(j) + lmbd)^(1 − alpha))

where ``s(i)`` is the number of training events of ``i`` and ``c(i, j) = Σ_sessions
e(s, i) · e(s, j)`` counts pairs of events (``e(s, i)`` = events of ``i`` in session ``s``; it
equals ``n(i, j)`` when no item repeats within a session). Same defaults there: 100
neighbours, lmbd 20, alpha 0.5. That code leaves the items outside the neighbours at 0 (tied);
here they are ordered by popularity (``tiebreak``; exact, see ``_sparse.with_tiebreak``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from sessionrec.errors import ConfigError
from sessionrec.models._lastitem import LastItemModel
from sessionrec.models._sparse import csr_from_coo, top_k_per_row
from sessionrec.prepare.data import SessionData

FORMS = ("sessions", "gru4rec")


@dataclass(frozen=True)
class ItemKNNConfig:
    """Parameters of item-kNN.

    Attributes:
        k: neighbours kept per item (0 keeps every co-occurring item).
        form: ``sessions`` (binary session vectors, ``lmbd`` in the denominator) or
            ``gru4rec`` (event counts, ``lmbd`` added to each support); see the module doc.
        lmbd: regularisation added to the denominator (GRU4Rec paper's baseline used 20).
        alpha: balance of the two items' supports in the denominator (0.5 = cosine).
        tiebreak: order items with equal scores by training popularity, exactly (below the
            resolution of the float32 scores, so it never reorders what the scores decide;
            ``_sparse.with_tiebreak``); false leaves them tied.
    """

    k: int = 100
    form: str = "sessions"
    lmbd: float = 20.0
    alpha: float = 0.5
    tiebreak: bool = True

    #: named starting points (``--param preset=NAME``; models/base.py ``make_config``)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "gru4rec": {"form": "gru4rec", "k": 100, "lmbd": 20.0, "alpha": 0.5},
    }

    def __post_init__(self) -> None:
        if self.k < 0 or self.lmbd < 0 or not 0 <= self.alpha <= 1:
            raise ConfigError("itemknn: k ≥ 0, lmbd ≥ 0 and 0 ≤ alpha ≤ 1 are required")
        if self.form not in FORMS:
            raise ConfigError(f"itemknn: form must be one of {FORMS}, not {self.form!r}")


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
        events = cfg.form == "gru4rec"
        # (sessions, items): 1 per session holding the item, or its number of events there
        indptr, indices, x = csr_from_coo(
            sess, train.items, None, (train.n_sessions, n), binary=not events
        )
        support = np.bincount(indices, weights=x, minlength=n)
        indptr, indices, counts = _cooccurrence(indptr, indices, x, n)
        row = np.repeat(np.arange(n), np.diff(indptr))
        off_diagonal = row != indices
        row, indices, counts = row[off_diagonal], indices[off_diagonal], counts[off_diagonal]
        indptr = np.r_[0, np.cumsum(np.bincount(row, minlength=n))]
        a, lm = cfg.alpha, cfg.lmbd
        if events:
            sim = counts / ((support[row] + lm) ** a * (support[indices] + lm) ** (1 - a))
        else:
            sim = counts / (support[row] ** a * support[indices] ** (1 - a) + lm)
        return top_k_per_row(indptr, indices, sim, cfg.k)


def _cooccurrence(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of XᵀX for the (sessions, items) matrix X given as CSR."""
    n_sess = len(indptr) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        x = torch.sparse_csr_tensor(
            torch.as_tensor(indptr),
            torch.as_tensor(indices),
            torch.as_tensor(data, dtype=torch.float64),
            size=(n_sess, n),
        )
        co = torch.sparse.mm(x.t().to_sparse_csr(), x)
    return (
        co.crow_indices().numpy().astype(np.int64),
        co.col_indices().numpy().astype(np.int64),
        co.values().numpy(),
    )
