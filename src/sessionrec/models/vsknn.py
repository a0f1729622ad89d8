"""Vector multiplication session-based kNN (V-SKNN; Ludewig & Jannach, "Evaluation of
session-based recommendation algorithms", UMUAI 2018).

SKNN (see ``sknn.py``) with three refinements from the paper:

* the current session is a real-valued vector in which recent events weigh more
  (``weighting``; distance ``d`` from the end, 0 for the last event, session length ``L``):
  ``harmonic`` 1/(d + 1) (default), ``linear`` (L − d)/L (the paper's linear decay, session-rec's
  "div"), ``quadratic`` ((L − d)/L)², ``same`` 1 (= SKNN);
* a neighbour's contribution decays with how far back the most recent item it shares with the
  current session lies (``weighting_score``: ``same`` 1, ``harmonic`` 1/(d + 1) (default),
  ``quadratic`` 1/(d + 1)²);
* an item's score can be raised by its inverse document frequency over training sessions:
  ``score(i) · (1 + idf_weighting · log(S / S_i))`` (default 1; 0 = off), ``S`` the number of
  training sessions and ``S_i`` those holding ``i`` (``idf_counts=sessions``) or the number of
  training events of ``i`` (``idf_counts=events``, as session-rec counts).

Defaults (k 100, harmonic / harmonic, IDF 1) were the best on the valid part of ML-100K. Where
they differ from session-rec's ``VMContextKNN`` (github.com/rn5l/session-rec,
``algorithms/knn/vsknn.py``, constructor defaults; its ``k`` has none, its docstring says 100):

=============================  ============================  ==================================
setting                        sessionrec default            session-rec (preset session-rec)
=============================  ============================  ==================================
similarity                     ``cosine``                    ``vec`` = ``dot`` here
position weight (weighting)    ``harmonic`` 1/(d + 1)        ``div`` i/L = ``linear`` here
neighbour decay                ``harmonic`` 1/(d + 1)        ``div`` 1/step = ``harmonic``
IDF                            on (1), session counts        off; when on, event counts
sample size                    500 most recent sharing item  1000 most recent sharing an item
k                              100                           100
=============================  ============================  ==================================

``--param preset=session-rec`` reproduces the right-hand column (explicit ``--param`` values
override it). Not reproduced: session-rec normalises each list by its maximum (no effect on the
ranking) and leaves ties in its own order; here they go to the more recent session
(neighbours) and to the more popular item (scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from sessionrec.errors import ConfigError
from sessionrec.models.sknn import SIMILARITIES, SKNN, SampleSize

WEIGHTINGS = ("harmonic", "linear", "quadratic", "same")
SCORE_WEIGHTINGS = ("same", "harmonic", "quadratic")
IDF_COUNTS = ("sessions", "events")


@dataclass(frozen=True)
class VSKNNConfig:
    """Parameters of V-SKNN (defaults tuned on the valid part of ML-100K, BENCHMARKS.md).

    Attributes:
        k: neighbours (most similar training sessions) per current session.
        sample_size: m: consider only the ``m`` most recent training sessions that share an item
            with the current one, found through an item → recent-sessions index (VMIS-kNN;
            ``sknn.py``); 0 = score every training session (exhaustive); ``auto`` (default):
            exact through the index on logs whose most popular item is in at most
            ``AUTO_EXACT_LIST`` training sessions, else the 500 most recent (``sknn.py``).
        similarity: ``cosine`` or ``dot`` (weighted overlap / distinct items in the session).
        weighting: recency weight of the current session's events (see the module doc).
        weighting_score: neighbour decay by its most recent shared item (module doc).
        idf_weighting: strength of the IDF boost of rare items (0 = off).
        idf_counts: what the IDF counts per item: ``sessions`` holding it or its ``events``.
        tiebreak: order items with equal scores by training popularity, exactly
            (``_sparse.with_tiebreak``); false leaves them tied.
    """

    k: int = 100
    sample_size: SampleSize = "auto"
    similarity: str = "cosine"
    weighting: str = "harmonic"
    weighting_score: str = "harmonic"
    idf_weighting: float = 1.0
    idf_counts: str = "sessions"
    tiebreak: bool = True

    #: named starting points (``--param preset=NAME``; models/base.py ``make_config``)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "session-rec": {
            "k": 100,
            "sample_size": 1000,
            "similarity": "dot",
            "weighting": "linear",
            "weighting_score": "harmonic",
            "idf_weighting": 0.0,
            "idf_counts": "events",
        },
    }

    def __post_init__(self) -> None:
        bad_m = self.sample_size != "auto" and self.sample_size < 0
        if self.k < 1 or bad_m or self.idf_weighting < 0:
            raise ConfigError("vsknn: k ≥ 1, sample_size ≥ 0 and idf_weighting ≥ 0 are required")
        for name, value, known in (
            ("similarity", self.similarity, SIMILARITIES),
            ("weighting", self.weighting, WEIGHTINGS),
            ("weighting_score", self.weighting_score, SCORE_WEIGHTINGS),
            ("idf_counts", self.idf_counts, IDF_COUNTS),
        ):
            if value not in known:
                raise ConfigError(f"vsknn: {name} must be one of {known}, not {value!r}")


class VSKNN(SKNN):
    """Session-based kNN with recency-weighted sessions, neighbour decay and IDF."""

    name: ClassVar[str] = "vsknn"
    Config: ClassVar[type] = VSKNNConfig

    def _position_weights(self, dist: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        one = np.float32(1.0)
        w = {
            "harmonic": lambda: one / (dist + one),
            "linear": lambda: (lengths - dist) / lengths,
            "quadratic": lambda: ((lengths - dist) / lengths) ** 2,
            "same": lambda: np.ones_like(dist),
        }[self.config.weighting]()
        return np.maximum(w, np.float32(0.0))

    def _has_decay(self) -> bool:
        return bool(self.config.weighting_score != "same")

    def _neighbour_decay(self, dist_of_shared: np.ndarray) -> np.ndarray:
        d = dist_of_shared.astype(np.float64)
        if self.config.weighting_score == "harmonic":
            return 1.0 / (d + 1)
        if self.config.weighting_score == "quadratic":
            return 1.0 / (d + 1) ** 2
        return np.ones_like(d)

    def _learn_item_weights(
        self, session_counts: np.ndarray, event_counts: np.ndarray, n_sessions: int
    ) -> torch.Tensor | None:
        if self.config.idf_weighting <= 0:
            return None
        counts = event_counts if self.config.idf_counts == "events" else session_counts
        df = np.asarray(counts).clip(min=1)
        idf = np.log(max(n_sessions, 1) / df)
        return torch.as_tensor(
            1.0 + self.config.idf_weighting * idf, dtype=torch.float32, device=self.device
        )
