"""Sequential rules (SR; Ludewig & Jannach, "Evaluation of session-based recommendation
algorithms", UMUAI 2018).

A rule ``a → b`` is counted each time ``b`` follows ``a`` within ``steps`` positions of one
training session, weighted by a decreasing function of the distance ``d`` between them
(``1/d`` by default). A session is scored by the rules of its last item:
``score(b) = Σ_{occurrences of a → b} w(d)`` with ``a`` the last item. Optionally only the
``pruning`` strongest rules per item are kept. Ties (items with no rule) fall back to
popularity through ``tie_epsilon``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sessionrec.errors import ConfigError
from sessionrec.models._lastitem import LastItemModel
from sessionrec.models._sparse import csr_from_coo, successor_pairs, top_k_per_row
from sessionrec.prepare.data import SessionData

#: distance d (1 = the next item) → rule weight
WEIGHTINGS = ("div", "same", "quadratic", "linear")


@dataclass(frozen=True)
class SRConfig:
    """Parameters of sequential rules.

    Attributes:
        steps: the largest distance between the two items of a rule (1 = Markov counts).
        weighting: weight of a rule at distance d: ``div`` 1/d (the paper's default),
            ``same`` 1, ``quadratic`` 1/d², ``linear`` (steps − d + 1)/steps.
        pruning: keep only the strongest ``pruning`` rules of each item (0 keeps all).
        tie_epsilon: weight of the popularity tie-break (popularity rank scaled into (0, 1)).
    """

    steps: int = 10
    weighting: str = "div"
    pruning: int = 0
    tie_epsilon: float = 1e-6

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
        }[cfg.weighting]()
        indptr, indices, data = csr_from_coo(a, b, w, (self.n_items, self.n_items))
        return top_k_per_row(indptr, indices, data, cfg.pruning)
