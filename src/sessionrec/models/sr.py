"""Sequential rules (SR; Ludewig & Jannach, "Evaluation of session-based recommendation
algorithms", UMUAI 2018).

A rule ``a → b`` is counted each time ``b`` follows ``a`` within ``steps`` positions of one
training session, weighted by a decreasing function of the distance ``d`` between them
(``1/d`` by default). A session is scored by the rules of its last item:
``score(b) = Σ_{occurrences of a → b} w(d)`` with ``a`` the last item. Optionally only the
``pruning`` strongest rules per item are kept. Ties (items with no rule) fall back to
popularity (``tiebreak``; exact, see ``_sparse.with_tiebreak``).

Preset ``session-rec`` (``--param preset=session-rec``): the defaults of session-rec's
``SequentialRules`` (github.com/rn5l/session-rec, ``algorithms/baselines/sr.py``): steps 10,
weighting ``div`` (1/d), pruning 20. Our defaults differ only in ``pruning`` (0 = keep every
rule); ``steps`` was chosen on the valid part of ML-100K (BENCHMARKS.md). session-rec also offers a ``linear`` weighting
``1 − 0.1·d`` (0 beyond d = 10), here ``linear-session-rec``; our ``linear`` is
``(steps − d + 1)/steps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sessionrec.errors import ConfigError
from sessionrec.models._lastitem import LastItemModel
from sessionrec.models._sparse import csr_from_coo, successor_pairs, top_k_per_row
from sessionrec.prepare.data import SessionData

#: distance d (1 = the next item) → rule weight
WEIGHTINGS = ("div", "same", "quadratic", "linear", "linear-session-rec")


@dataclass(frozen=True)
class SRConfig:
    """Parameters of sequential rules.

    Attributes:
        steps: the largest distance between the two items of a rule (1 = Markov counts).
        weighting: weight of a rule at distance d: ``div`` 1/d (the paper's default),
            ``same`` 1, ``quadratic`` 1/d², ``linear`` (steps − d + 1)/steps,
            ``linear-session-rec`` max(0, 1 − 0.1·d) (session-rec's ``linear``).
        pruning: keep only the strongest ``pruning`` rules of each item (0 keeps all).
        tiebreak: order items with equal scores by training popularity, exactly (below the
            resolution of the float32 scores, so it never reorders what the scores decide;
            ``_sparse.with_tiebreak``); false leaves them tied.
    """

    steps: int = 10
    weighting: str = "div"
    pruning: int = 0
    tiebreak: bool = True

    #: named starting points (``--param preset=NAME``; models/base.py ``make_config``)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "session-rec": {"steps": 10, "weighting": "div", "pruning": 20},
    }

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"sr: steps must be ≥ 1, not {self.steps}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"sr: weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")


class SR(LastItemModel):
    """Sequential rules a → b weighted by the distance from a to b."""

    name: ClassVar[str] = "sr"
    Config: ClassVar[type] = SRConfig

    def _learn(self, train: SessionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg: SRConfig = self.config
        a, b, d = successor_pairs(train, cfg.steps)
        df = d.astype(np.float64)
        w = {
            "div": lambda: 1.0 / df,
            "same": lambda: np.ones_like(df),
            "quadratic": lambda: 1.0 / df**2,
            "linear": lambda: (cfg.steps - df + 1) / cfg.steps,
            "linear-session-rec": lambda: np.maximum(0.0, 1.0 - 0.1 * df),
        }[cfg.weighting]()
        indptr, indices, data = csr_from_coo(a, b, w, (self.n_items, self.n_items))
        return top_k_per_row(indptr, indices, data, cfg.pruning)
