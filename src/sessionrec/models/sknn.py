"""Session-based kNN (SKNN; Ludewig & Jannach, "Evaluation of session-based recommendation
algorithms", UMUAI 2018; Jannach & Ludewig, RecSys 2017).

The current session is a binary item vector ``q``. Its similarity to each training session
``x`` is the cosine ``q·x / (‖q‖ ‖x‖)``; the ``k`` most similar training sessions are its
neighbours, and an item scores the summed similarity of the neighbours that contain it:
``score(i) = Σ_{n ∈ N_k(q)} sim(q, n) · 1[i ∈ n]``. With ``sample_size`` only the most recent
sessions sharing an item with ``q`` are candidates (the paper's speed-up). Items with equal
scores (e.g. those no neighbour holds) are ordered by popularity (``tiebreak``; exact, see
``_sparse.with_tiebreak``: the scores come back as float64).

Batched and vectorised: the (B, S) similarities are one sparse × dense product with the
sessions → items matrix, neighbours the ``k`` largest per row (ties → the more recent session)
found with one ``topk`` for the k-th value rather than a full sort, V-SKNN's "most recent shared
item" of every session one more sparse product in the (max, ×) semiring, and scores one product
with the items → sessions matrix; no loop per item or per session. The evaluator scores only
the slots it predicts (``score_rows``), so idle slots of the session-parallel batch cost
nothing (BENCHMARKS.md, "Session kNN evaluation speed").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import torch

from sessionrec.errors import ConfigError
from sessionrec.models._sparse import (
    CSR,
    csr_from_coo,
    expand_rows,
    popularity_tiebreak,
    tiebreak_tensor,
    with_tiebreak,
)
from sessionrec.models.base import EpochCallback, SessionModel
from sessionrec.prepare.data import SessionData

SIMILARITIES = ("cosine", "dot")
#: floats of the (B, S) similarity block computed at once (memory bound)
_SIM_BLOCK = 1 << 24


@dataclass(frozen=True)
class SKNNConfig:
    """Parameters of session-based kNN.

    Attributes:
        k: neighbours (most similar training sessions) per current session; 100 was the best
            of 50/100/200/500 on the valid part of ML-100K (BENCHMARKS.md).
        sample_size: consider only the ``sample_size`` most recent training sessions that share
            an item with the current one (0 = every training session).
        similarity: ``cosine`` (q·x / (‖q‖‖x‖)) or ``dot`` (q·x / number of distinct items in
            the current session, session-rec's "vec").
        tiebreak: order items with equal scores by training popularity, exactly (below the
            resolution of the float32 scores, so it never reorders what the scores decide;
            ``_sparse.with_tiebreak``); false leaves them tied.
    """

    k: int = 100
    sample_size: int = 0
    similarity: str = "cosine"
    tiebreak: bool = True

    def __post_init__(self) -> None:
        if self.k < 1 or self.sample_size < 0:
            raise ConfigError("sknn: k ≥ 1 and sample_size ≥ 0 are required")
        if self.similarity not in SIMILARITIES:
            raise ConfigError(f"similarity must be one of {SIMILARITIES}, not {self.similarity!r}")


@dataclass(frozen=True)
class KNNState:
    """Streaming state: the items of each slot's session so far.

    Attributes:
        items: (B, L) int64, −1 past each session's end; L grows as needed.
        lengths: (B,) int64 events per slot.
    """

    items: torch.Tensor
    lengths: torch.Tensor


class SKNN(SessionModel):
    """Session-based kNN over binary session vectors."""

    name: ClassVar[str] = "sknn"
    Config: ClassVar[type] = SKNNConfig
    #: neighbours vote for all their items, whatever their order: a 3-cycle's next item is not
    #: told from the previous ones (V-SKNN weighs the current session by recency, still not order)
    learns_order: ClassVar[bool] = False

    def __init__(self, config: Any = None, *, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device=device)
        #: (S, n_items) binary training sessions, most recent session first
        self.sessions: CSR | None = None
        #: (n_items, S) its transpose: the sessions of each item
        self.item_sessions: CSR | None = None
        self.tiebreak: torch.Tensor | None = None
        #: (n_items,) per-item multiplier of the scores (VSKNN's IDF), or None
        self.item_weights: torch.Tensor | None = None

    # -- training ---------------------------------------------------------------------------
    def fit(
        self,
        train: SessionData,
        valid: SessionData | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        """Index the training sessions (one pass, no epochs: ``valid``/``callback`` unused)."""
        self.n_items = n = train.n_items
        n_sess = train.n_sessions
        # sessions ordered most recent (latest event) first, so that index order = recency
        ends = train.offsets[1:] - 1
        last_time = train.timestamps[ends] if n_sess else np.zeros(0, dtype=np.int64)
        order = np.lexsort((np.arange(n_sess), -last_time))
        new_index = np.empty(n_sess, dtype=np.int64)
        new_index[order] = np.arange(n_sess)
        sess = new_index[np.repeat(np.arange(n_sess), train.lengths)]
        indptr, indices, data = csr_from_coo(sess, train.items, None, (n_sess, n), binary=True)
        self._set_sessions(CSR.from_numpy(indptr, indices, data, n, self.device))
        counts = train.item_counts()
        self.tiebreak = tiebreak_tensor(popularity_tiebreak(counts), self.device)
        self.item_weights = self._learn_item_weights(
            np.bincount(indices, minlength=n), counts, n_sess
        )
        return self

    def _learn_item_weights(
        self, session_counts: np.ndarray, event_counts: np.ndarray, n_sessions: int
    ) -> torch.Tensor | None:
        """(n_items,) score multipliers (VSKNN's IDF) from each item's number of training
        sessions and events, or None."""
        return None

    def _set_sessions(self, sessions: CSR) -> None:
        self.sessions = sessions
        self.item_sessions = _transpose(sessions)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            self._sessions_t = sessions.torch_csr()
            self._item_sessions_t = self.item_sessions.torch_csr()
        self._session_norm = sessions.row_sums().sqrt().clamp_min(1e-12)

    # -- streaming --------------------------------------------------------------------------
    def start(self, batch_size: int) -> KNNState:
        return KNNState(
            torch.full((batch_size, 8), -1, dtype=torch.long, device=self.device),
            torch.zeros(batch_size, dtype=torch.long, device=self.device),
        )

    def reset(self, state: KNNState, mask: torch.Tensor) -> KNNState:
        mask = mask.to(self.device)
        return KNNState(
            state.items.masked_fill(mask.unsqueeze(1), -1), state.lengths.masked_fill(mask, 0)
        )

    def step(self, state: KNNState, items: torch.Tensor) -> KNNState:
        buf = state.items
        if buf.shape[0] and int(state.lengths.max()) >= buf.shape[1]:
            buf = torch.cat([buf, torch.full_like(buf, -1)], dim=1)
        else:
            buf = buf.clone()
        rows = torch.arange(buf.shape[0], device=self.device)
        buf[rows, state.lengths] = items.to(self.device, torch.long)
        return KNNState(buf, state.lengths + 1)

    def score(self, state: KNNState) -> torch.Tensor:
        """(B, n_items) summed neighbour similarities; float64 with the popularity tie-break
        (``tiebreak``), float32 without."""
        return self._score(state.items, state.lengths)

    def score_rows(self, state: KNNState, rows: torch.Tensor) -> torch.Tensor:
        """(R, n_items) ``score(state)[rows]``, computed for those slots only."""
        rows = rows.to(self.device)
        return self._score(state.items[rows], state.lengths[rows])

    def _score(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.sessions is None or self.tiebreak is None:
            raise RuntimeError(f"{self.name}: call fit() or load_from() before scoring")
        n_batch = items.shape[0]
        out = torch.empty(n_batch, self.n_items, device=self.device)
        block = max(1, _SIM_BLOCK // max(1, self.sessions.n_rows))
        for lo in range(0, n_batch, block):
            hi = min(n_batch, lo + block)
            out[lo:hi] = self._score_block(items[lo:hi], lengths[lo:hi])
        return with_tiebreak(out, self.tiebreak) if self.config.tiebreak else out

    # -- the model --------------------------------------------------------------------------
    def _position_weights(self, dist: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, L) weight of each event of the current session; ``dist`` 0 = the last event."""
        return torch.ones(dist.shape, device=self.device)

    def _has_decay(self) -> bool:
        return False

    def _neighbour_decay(self, dist_of_shared: torch.Tensor) -> torch.Tensor:
        """Multiplier of each neighbour from the distance of its most recent shared item
        (elementwise, any shape)."""
        return torch.ones(dist_of_shared.shape, device=self.device)

    def _score_block(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        assert self.sessions is not None and self.item_sessions is not None
        cfg = self.config
        n_b, width = items.shape
        pos = torch.arange(width, device=self.device).unsqueeze(0)
        present = pos < lengths.unsqueeze(1)
        safe = items.clamp_min(0)
        # a repeated item counts once, at its latest (highest-weighted) position
        last_pos = torch.full((n_b, self.n_items), -1, dtype=torch.long, device=self.device)
        last_pos.scatter_reduce_(1, safe, torch.where(present, pos, -1).expand_as(safe), "amax")
        latest = present & (last_pos.gather(1, safe) == pos)
        dist = (lengths.unsqueeze(1) - 1 - pos).clamp_min(0)
        weights = self._position_weights(dist, lengths) * latest
        # q (b, n_items) dense; (b, S) q·x as the sparse (S, n_items) sessions times qᵀ
        q = torch.zeros(n_b, self.n_items, device=self.device)
        q.scatter_add_(1, safe, weights)
        sims = _spmm(self._sessions_t, q)
        if cfg.similarity == "cosine":
            q_norm = weights.square().sum(1).sqrt().clamp_min(1e-12)
            sims = sims / self._session_norm.unsqueeze(0) / q_norm.unsqueeze(1)
        else:
            sims = sims / latest.sum(1).clamp_min(1).unsqueeze(1)
        n_sess = sims.shape[1]
        if 0 < cfg.sample_size < n_sess:
            # only the most recent sessions sharing an item are candidates (lower index = more
            # recent); the others drop to similarity 0, i.e. out of the neighbourhood
            recency = torch.arange(n_sess, 0, -1, device=self.device).unsqueeze(0)
            cand = torch.topk(torch.where(sims > 0, recency, 0), cfg.sample_size, dim=1).indices
            sims = torch.zeros_like(sims).scatter_(1, cand, sims.gather(1, cand))
        chosen = _top_k_mask(sims, cfg.k)
        nb = torch.where(chosen, sims, 0)
        if self._has_decay():
            nb = nb * self._neighbour_decay(self._shared_distance(last_pos, lengths))
        # (b, n_items) through the (n_items, S) items → sessions matrix
        scores = _spmm(self._item_sessions_t, nb)
        if self.item_weights is not None:
            scores = scores * self.item_weights.unsqueeze(0)
        return scores

    def _shared_distance(self, last_pos: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(b, S) distance from the end of the most recent item each training session shares
        with the current one (only read where the session is a neighbour, i.e. shares one).

        Args:
            last_pos: (b, n_items) latest position of each item in the current session, −1
                if absent.
            lengths: (b,) events in the current session.
        """
        assert self.item_sessions is not None
        if self.device.type == "cpu":
            latest = _latest_shared_spmm(self._sessions_t, last_pos)
        else:
            latest = _latest_shared_scatter(self.item_sessions, last_pos)
        return lengths.unsqueeze(1) - latest

    # -- persistence ------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, torch.Tensor]:
        if self.sessions is None or self.tiebreak is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit()")
        arrays = {**self.sessions.arrays("sessions"), "tiebreak": self.tiebreak}
        if self.item_weights is not None:
            arrays["item_weights"] = self.item_weights
        return arrays

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self._set_sessions(CSR.from_arrays(arrays, "sessions", self.device))
        self.n_items = self.sessions.n_cols if self.sessions is not None else 0
        self.tiebreak = tiebreak_tensor(arrays["tiebreak"], self.device)
        w = arrays.get("item_weights")
        self.item_weights = None if w is None else w.to(self.device, torch.float32)


def _top_k_mask(sims: torch.Tensor, k: int) -> torch.Tensor:
    """(b, S) bool: each row's ``k`` largest positive entries, ties → the lower index.

    The same set as a stable descending sort cut at ``k``, without sorting every row: all
    entries above the k-th largest value, then the first entries equal to it until ``k``.
    """
    n_b, n_sess = sims.shape
    if k >= n_sess or n_b == 0:
        return sims > 0
    kth = torch.topk(sims, k, dim=1).values[:, -1:]
    above = sims > kth
    at = sims == kth
    room = k - above.sum(1, keepdim=True)
    return (above | (at & (at.cumsum(1) <= room))) & (sims > 0)


def _latest_shared_spmm(sessions_t: torch.Tensor, last_pos: torch.Tensor) -> torch.Tensor:
    """(b, S) 1 + the latest position of an item each session shares with the current one.

    A sparse × dense product in the (max, ×) semiring: the (S, n_items) binary sessions times
    (last_pos + 1)ᵀ, reduced by max (torch implements ``reduce=`` for CSR on the CPU only).
    Positions are small integers, exact in float32.

    Args:
        sessions_t: (S, n_items) torch sparse CSR, binary.
        last_pos: (b, n_items) int64 latest position of each item in the current session,
            −1 if absent.

    Returns:
        (b, S) int64, 0 where the session shares no item.
    """
    dense = (last_pos + 1).t().float()
    return torch.sparse.mm(sessions_t, dense, "amax").t().long()


def _latest_shared_scatter(item_sessions: CSR, last_pos: torch.Tensor) -> torch.Tensor:
    """As ``_latest_shared_spmm``, by a scatter-max over the sessions of each item present in
    the current session (any device); ``item_sessions`` is the (n_items, S) index."""
    n_b, n_sess = last_pos.shape[0], item_sessions.n_cols
    b_idx, item = torch.nonzero(last_pos >= 0, as_tuple=True)
    flat, owner = expand_rows(item_sessions.indptr, item)
    latest = torch.zeros(n_b * n_sess, dtype=torch.long, device=last_pos.device)
    at = b_idx[owner] * n_sess + item_sessions.indices[flat]
    latest.scatter_reduce_(0, at, last_pos[b_idx, item][owner] + 1, "amax")
    return latest.view(n_b, n_sess)


def _spmm(m: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """(b, R) = (m (R, C) sparse CSR @ denseᵀ (C, b))ᵀ."""
    return torch.sparse.mm(m, dense.t().contiguous()).t().contiguous()


def _transpose(m: CSR) -> CSR:
    """The (n_cols, n_rows) transpose, rows sorted (a stable sort by column)."""
    rows = torch.repeat_interleave(torch.arange(m.n_rows, device=m.indptr.device), m.indptr.diff())
    order = torch.sort(m.indices, stable=True).indices
    counts = torch.bincount(m.indices, minlength=m.n_cols)
    indptr = torch.zeros(m.n_cols + 1, dtype=torch.long, device=m.indptr.device)
    indptr[1:] = torch.cumsum(counts, 0)
    return CSR(indptr, rows[order], m.data[order], m.n_rows)
