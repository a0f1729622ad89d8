"""Session-based kNN (SKNN; Ludewig & Jannach, "Evaluation of session-based recommendation
algorithms", UMUAI 2018; Jannach & Ludewig, RecSys 2017).

The current session is a binary item vector ``q``. Its similarity to each training session
``x`` is the cosine ``q·x / (‖q‖ ‖x‖)``; the ``k`` most similar training sessions are its
neighbours, and an item scores the summed similarity of the neighbours that contain it:
``score(i) = Σ_{n ∈ N_k(q)} sim(q, n) · 1[i ∈ n]``. Items with equal scores (e.g. those no
neighbour holds) are ordered by popularity (``tiebreak``; exact, see ``_sparse.with_tiebreak``:
the scores come back as float64).

Two ways to find the neighbours, with the same scores:

* ``sample_size = m > 0`` (``auto`` on a large log: 500): only the ``m`` most recent training sessions
  that share an item with ``q`` are candidates (session-rec's ``sample_size``). They are found
  through an item → most-recent-sessions index built at fit and load time, as in VMIS-kNN
  (Kersbergen et al., "Serenade", SIGMOD 2022): per item the ``m`` most recent sessions holding
  it. The ``m`` most recent sessions of the union of the current items' lists are exactly the
  ``m`` most recent sessions sharing an item (a session among those is among the ``m`` most
  recent of each list it is in), so the truncation loses nothing. Only those candidates are
  scored: the cost of a prediction is bounded by ``m`` × the distinct items of the session
  (q·x is read off the index lists themselves: a candidate is in the list of every current item
  it holds) plus ``k`` × the neighbours' lengths, whatever the size of the training log. On
  the CPU this path runs in numpy (a prediction is a few dozen small array operations, each
  far cheaper to call than a torch op); elsewhere in torch, with the same scores bit for bit.
  ``top_k`` (the live service) ranks only the neighbours' items and the head of the
  popularity background, never the whole catalogue.
* ``sample_size = 0``: exhaustive; every training session is scored, as a dense (B, S) block
  (one sparse × dense product with the sessions → items matrix), neighbours the ``k`` largest
  per row found with one ``topk`` for the k-th value, V-SKNN's "most recent shared item" of
  every session one more sparse product in the (max, ×) semiring, and scores one product with
  the items → sessions matrix. The cost grows with the number of training sessions; it is the
  reference the index is tested against (``tests/test_knn_index.py``: with ``m`` ≥ the number
  of sessions both give bit-identical scores, and with a small ``m`` the index equals this path
  restricted to the ``m`` most recent candidates).

Both paths compute in float64 up to the final scores: dot products of float32 weights are then
exact, so the similarities (hence neighbourhoods, ties → the more recent session) do not depend
on the summation order; the item scores are float64 sums of the neighbours' contributions,
rounded to float32. The evaluator scores only the slots it predicts (``score_rows``), so idle
slots of the session-parallel batch cost nothing (BENCHMARKS.md, "Session kNN evaluation speed"
and "YOOCHOOSE scale").
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch

from sessionrec.errors import ConfigError
from sessionrec.models._sparse import (
    _MIN_EXP32,
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
#: floats of the (B, S) similarity block computed at once by the exhaustive path (memory bound)
_SIM_BLOCK = 1 << 24
#: current sessions scored at once by the indexed path (its memory is ~ rows × m × length)
_INDEX_BLOCK = 1024
#: current sessions scored at once by the numpy path
_NUMPY_BLOCK = 64
#: the ``sample_size`` (m) of sknn and vsknn when ``auto`` samples (a large log)
DEFAULT_SAMPLE_SIZE = 500
#: ``sample_size="auto"`` is exact (every session sharing an item is a candidate) while the
#: most popular item is held by at most this many training sessions, and samples the
#: ``DEFAULT_SAMPLE_SIZE`` most recent above. Exact search cost 1.14× m = 500's CPU per served
#: event on ML-100K (longest list 546) and 7× on a synthetic e-commerce log (8,103), whose
#: m = 500 lost 3.9 points of Recall@20 (BENCHMARKS.md, "Session kNN: sample_size auto")
AUTO_EXACT_LIST = 2_000
#: the type of ``sample_size``: a number of candidates, 0 (exhaustive) or "auto"
SampleSize = int | Literal["auto"]


def effective_sample_size(sample_size: SampleSize, n_sessions: int, longest_list: int) -> int:
    """The m a model runs with: ``auto`` → every session (``n_sessions``, exact through the
    index) when the longest item → sessions list holds at most ``AUTO_EXACT_LIST``, else
    ``DEFAULT_SAMPLE_SIZE``; a number as it is."""
    if sample_size != "auto":
        return int(sample_size)
    return max(n_sessions, 1) if longest_list <= AUTO_EXACT_LIST else DEFAULT_SAMPLE_SIZE


@dataclass(frozen=True)
class SKNNConfig:
    """Parameters of session-based kNN.

    Attributes:
        k: neighbours (most similar training sessions) per current session; 100 was the best
            of 50/100/200/500 on the valid part of ML-100K (BENCHMARKS.md).
        sample_size: m: consider only the ``m`` most recent training sessions that share an item
            with the current one, found through an item → recent-sessions index (VMIS-kNN;
            cost per prediction independent of the log's size); 0 = score every training
            session (exhaustive, the dense path). ``auto`` (default): every session sharing an
            item, through the index, while no item is held by more than ``AUTO_EXACT_LIST``
            training sessions (the scores of exhaustive, bit for bit), else the 500 most
            recent; a fixed 500 lost 9 % of Recall@20 on ML-100K against exhaustive, in a
            paired test on the same predictions (BENCHMARKS.md).
        similarity: ``cosine`` (q·x / (‖q‖‖x‖)) or ``dot`` (q·x / number of distinct items in
            the current session, session-rec's "vec").
        tiebreak: order items with equal scores by training popularity, exactly (below the
            resolution of the float32 scores, so it never reorders what the scores decide;
            ``_sparse.with_tiebreak``); false leaves them tied.
    """

    k: int = 100
    sample_size: SampleSize = "auto"
    similarity: str = "cosine"
    tiebreak: bool = True

    def __post_init__(self) -> None:
        if self.k < 1 or (self.sample_size != "auto" and self.sample_size < 0):
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
        #: (n_items, S) its transpose: the sessions of each item, most recent first
        self.item_sessions: CSR | None = None
        #: (n_items, ≤ m) the index: the first ``sample_size`` entries of each item's row of
        #: ``item_sessions`` (its most recent sessions); None when exhaustive
        self.recent_index: CSR | None = None
        self.tiebreak: torch.Tensor | None = None
        #: (n_items,) per-item multiplier of the scores (VSKNN's IDF), or None
        self.item_weights: torch.Tensor | None = None
        #: the m it runs with (``effective_sample_size``: ``auto`` resolved on the sessions)
        self.sample_m = 0

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
        """Keep the sessions and derive the rest: the transpose, the norms and (m > 0) the
        item → recent-sessions index. Nothing derived is saved, so a folder saved before the
        index existed loads and gets one (rebuilt in seconds at YOOCHOOSE scale)."""
        self.sessions = sessions
        self.item_sessions = _transpose(sessions)
        longest = int(self.item_sessions.indptr.diff().max()) if sessions.n_cols else 0
        self.sample_m = m = effective_sample_size(self.config.sample_size, sessions.n_rows, longest)
        #: what the runner records in training.json (a sampled default is said, not hidden)
        self.fit_warnings: list[str] = []
        if self.config.sample_size == "auto" and 0 < m < sessions.n_rows:
            self.fit_warnings.append(
                f"sample_size auto: an item is in {longest:,} training sessions (more than "
                f"{AUTO_EXACT_LIST:,}), so the {m:,} most recent sessions sharing an item are the "
                "candidates; sample_size=0 searches them all, at a higher cost per prediction"
            )
        self.recent_index = _first_per_row(self.item_sessions, m) if m > 0 else None
        self._session_norm = sessions.row_sums().double().sqrt().clamp_min(1e-12)
        self._dense: torch.Tensor | None = None
        self._zero_row: torch.Tensor | None = None
        self._zero_row_np: np.ndarray | None = None
        self._zero_order_np: np.ndarray | None = None
        self._np_index: _NumpyIndex | None = None

    @property
    def _np(self) -> _NumpyIndex | None:
        """The index as numpy views of the CPU tensors (built at the first numpy scoring, once
        fit or load has set everything it reads)."""
        if self._np_index is None and self.recent_index is not None:
            assert self.sessions is not None
            weights = self.item_weights
            self._np_index = _NumpyIndex(
                n_sess=self.sessions.n_rows,
                sess_indptr=self.sessions.indptr.numpy(),
                sess_indices=self.sessions.indices.numpy(),
                recent_indptr=self.recent_index.indptr.numpy(),
                recent_indices=self.recent_index.indices.numpy(),
                session_norm=self._session_norm.numpy(),
                item_weights=None if weights is None else weights.numpy(),
            )
        return self._np_index

    @property
    def _tiebreak_np(self) -> np.ndarray:
        assert self.tiebreak is not None
        return self.tiebreak.numpy()

    @property
    def _sessions_t(self) -> torch.Tensor:
        """(S, n_items) sessions as a float64 torch sparse CSR (exhaustive path; built once)."""
        if self._dense is None:
            assert self.sessions is not None
            s = self.sessions
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                self._dense = CSR(s.indptr, s.indices, s.data.double(), s.n_cols).torch_csr()
        return self._dense

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

    def join_states(self, states: Sequence[Any]) -> KNNState:
        """The sessions side by side, each row's item buffer padded with −1 to the widest."""
        width = max(st.items.shape[1] for st in states)
        n = sum(st.items.shape[0] for st in states)
        items = torch.full((n, width), -1, dtype=torch.long, device=self.device)
        r = 0
        for st in states:
            rows, w = st.items.shape
            items[r : r + rows, :w] = st.items
            r += rows
        return KNNState(items, torch.cat([st.lengths for st in states]))

    def split_state(self, state: KNNState, n: int) -> list[KNNState]:
        return [
            KNNState(state.items[r : r + 1].clone(), state.lengths[r : r + 1].clone())
            for r in range(n)
        ]

    def _fast_top_k(self) -> bool:
        """Whether ``top_k`` ranks from the candidates (CPU, index, tie-break on)."""
        return (
            self.recent_index is not None
            and bool(self.config.tiebreak)
            and self.device.type == "cpu"
        )

    def top_k(
        self, state: KNNState, row: int, k: int, exclude: Sequence[int] | None = None
    ) -> tuple[list[int], list[float]]:
        """The base answer, from the candidates only (CPU, index, tie-break on): the items
        neighbours hold, with their scores, and the first items of the background every other
        item keeps (its popularity tie-break; ``_zero_order``), enough of them to fill ``k``
        past the held and excluded ones. Every score is distinct, so the order is the full
        ranking's."""
        if not self._fast_top_k():
            return super().top_k(state, row, k, exclude)
        items = state.items[row : row + 1].numpy()
        _, cols, values = self._score_block_numpy(items, state.lengths[row : row + 1].numpy())
        top = self._top_of_candidates(cols, values, k, exclude)
        return super().top_k(state, row, k, exclude) if top is None else top

    def top_k_many(
        self, state: KNNState, ks: Sequence[int], excludes: Sequence[Sequence[int] | None]
    ) -> list[tuple[list[int], list[float]]]:
        """``top_k`` of slots 0 .. len(ks) − 1, their neighbours found in one block: the
        scores of each row are the ones ``top_k`` finds alone, bit for bit (the block sums
        each row's entries in the same order)."""
        n = len(ks)
        if not self._fast_top_k():
            return super().top_k_many(state, ks, excludes)
        rows, cols, values = self._score_block_numpy(
            state.items[:n].numpy(), state.lengths[:n].numpy()
        )
        bounds = np.searchsorted(rows, np.arange(n + 1))
        out = []
        for r, (k, exclude) in enumerate(zip(ks, excludes, strict=True)):
            a, b = bounds[r], bounds[r + 1]
            top = self._top_of_candidates(cols[a:b], values[a:b], k, exclude)
            out.append(SessionModel.top_k(self, state, r, k, exclude) if top is None else top)
        return out

    def _top_of_candidates(
        self, cols: np.ndarray, values: np.ndarray, k: int, exclude: Sequence[int] | None
    ) -> tuple[list[int], list[float]] | None:
        """The k best of one session from its neighbours' items ``cols`` and their float32
        sums ``values``, with the background filling in; None when a score is not finite
        (the caller then ranks the full vector, which never serves NaN)."""
        scores = _with_tiebreak_np(values, self._tiebreak_np[cols])
        if not np.isfinite(scores).all():
            return None
        out = np.asarray(sorted(set(exclude or ())), dtype=np.int64)
        zero_order, zero_row = self._zero_order
        held = np.zeros(self.n_items, dtype=bool)
        held[cols] = True
        extra = zero_order[: k + cols.size + out.size]
        extra = extra[~held[extra]]
        cand = np.concatenate([cols, extra])
        vals = np.concatenate([scores, zero_row[extra]])
        if out.size:
            gone = np.zeros(self.n_items, dtype=bool)
            gone[out] = True
            keep = ~gone[cand]
            cand, vals = cand[keep], vals[keep]
        if vals.size > 4 * k:  # the k best by a partition, then sorted (scores are distinct)
            part = np.argpartition(-vals, k - 1)[:k]
            best = part[np.argsort(-vals[part], kind="stable")]
        else:
            best = np.argsort(-vals, kind="stable")[:k]
        return cand[best].tolist(), vals[best].tolist()

    @property
    def _zero_order(self) -> tuple[np.ndarray, np.ndarray]:
        """The items by their score when no neighbour holds them (the tie-break), best first,
        and those scores."""
        if self._zero_row_np is None:
            self._zero_row_np = _with_tiebreak_np(np.zeros(self.n_items), self._tiebreak_np)
        if self._zero_order_np is None:
            self._zero_order_np = np.argsort(-self._zero_row_np, kind="stable")
        return self._zero_order_np, self._zero_row_np

    def _score(
        self,
        items: torch.Tensor,
        lengths: torch.Tensor,
        *,
        exhaustive: bool | None = None,
        torch_index: bool = False,
    ) -> torch.Tensor:
        """Scores through the index (``sample_size`` > 0) or exhaustively; ``exhaustive=True``
        forces the dense path (with ``sample_size`` > 0 it keeps the ``m`` most recent
        candidates of the dense block: the reference of the indexed path in tests).

        On the CPU the index is read with numpy (``_score_numpy``: a prediction is a few dozen
        small array operations, and numpy's per-call cost is a fraction of torch's); on other
        devices, or with ``torch_index=True`` (tests), with the same operations in torch.

        Both paths return the non-zero scores as (row, item, value) entries; only those get
        the tie-break computed, every other item takes its precomputed zero-score value, so
        the one dense pass is the copy of that row.
        """
        if self.sessions is None or self.tiebreak is None:
            raise RuntimeError(f"{self.name}: call fit() or load_from() before scoring")
        if exhaustive is None:
            exhaustive = self.recent_index is None
        if not exhaustive and not torch_index and self.device.type == "cpu":
            return torch.from_numpy(self._score_numpy(items.numpy(), lengths.numpy()))
        n_batch = items.shape[0]
        if exhaustive:
            block, score_block = _SIM_BLOCK // max(1, self.sessions.n_rows), self._score_block
        else:
            block, score_block = _INDEX_BLOCK, self._score_block_indexed
        block = max(1, block)
        tiebreak = self.config.tiebreak
        if tiebreak:
            if self._zero_row is None:
                zeros = torch.zeros(1, self.n_items, device=self.device)
                self._zero_row = with_tiebreak(zeros, self.tiebreak)[0]
            out = torch.empty(n_batch, self.n_items, dtype=self._zero_row.dtype, device=self.device)
            out.copy_(self._zero_row.unsqueeze(0).expand_as(out))
        else:
            out = torch.zeros(n_batch, self.n_items, device=self.device)
        for lo in range(0, n_batch, block):
            hi = min(n_batch, lo + block)
            rows, cols, values = score_block(items[lo:hi], lengths[lo:hi])
            if tiebreak:  # with_tiebreak is elementwise: on the entries alone it is the same
                values = with_tiebreak(values, self.tiebreak[cols])
            out[rows + lo, cols] = values.to(out.dtype)
        return out

    # -- the model --------------------------------------------------------------------------
    def _position_weights(self, dist: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(Q,) float32 weight of each distinct item of the current sessions from its latest
        event's distance from the end (``dist`` 0 = the last event) and the session's length
        (both float32)."""
        return np.ones(dist.shape, dtype=np.float32)

    def _has_decay(self) -> bool:
        return False

    def _neighbour_decay(self, dist_of_shared: np.ndarray) -> np.ndarray:
        """(N,) float64 multiplier of each neighbour from the distance (int64) of the most
        recent item it shares with the current session."""
        return np.ones(dist_of_shared.shape, dtype=np.float64)

    def _neighbour_decay_torch(self, dist_of_shared: torch.Tensor) -> torch.Tensor:
        decay = self._neighbour_decay(dist_of_shared.cpu().numpy())
        return torch.from_numpy(decay).to(self.device)

    def _query(self, items: np.ndarray, lengths: np.ndarray) -> _Query:
        """The current sessions of a block as every path reads them (numpy, any device).

        Args:
            items: (b, W) int64 the events of each session, −1 past its end.
            lengths: (b,) int64 events per session.
        """
        # a repeated item counts once, at its latest (highest-weighted) position: sort the
        # events by (row, item), stably, so the last of each run is the latest
        present = np.arange(items.shape[1]) < lengths[:, None]
        ev_b, ev_p = np.nonzero(present)  # row-major: positions ascending
        key = ev_b * self.n_items + items[ev_b, ev_p]
        order = np.argsort(key, kind="stable")
        key_sorted = key[order]
        last = np.ones(key_sorted.shape, dtype=bool)
        last[:-1] = key_sorted[1:] != key_sorted[:-1]
        q_b, q_p = ev_b[order[last]], ev_p[order[last]]
        length = lengths[q_b]
        dist = (length - 1 - q_p).astype(np.float32)
        # float32 weights, summed in float64: the products of two are exact
        weights = self._position_weights(dist, length.astype(np.float32)).astype(np.float64)
        n_b = items.shape[0]
        if self.config.similarity == "cosine":
            denom = np.sqrt(np.bincount(q_b, weights=weights * weights, minlength=n_b))
        else:
            denom = np.bincount(q_b, minlength=n_b).astype(np.float64)
        return _Query(key_sorted[last], q_p, weights, np.maximum(denom, 1e-12))

    def _query_torch(self, items: torch.Tensor, lengths: torch.Tensor) -> _Query:
        """``_query`` as tensors on the model's device (the torch paths)."""
        qy = self._query(items.cpu().numpy(), lengths.cpu().numpy())
        arrays = (qy.keys, qy.positions, qy.weights, qy.denom)
        return _Query(*(torch.from_numpy(a).to(self.device) for a in arrays))

    def _score_numpy(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(b, n_items) scores through the index, with numpy (CPU): ``_score`` on the CPU."""
        n_b = items.shape[0]
        if self.config.tiebreak:
            _, zero_row = self._zero_order
            out = np.empty((n_b, self.n_items), dtype=np.float64)
            out[:] = zero_row
        else:
            out = np.zeros((n_b, self.n_items), dtype=np.float32)
        # blocks of rows bound the memory of the entries (~ rows × m × distinct items)
        for lo in range(0, n_b, _NUMPY_BLOCK):
            hi = min(n_b, lo + _NUMPY_BLOCK)
            rows, cols, values = self._score_block_numpy(items[lo:hi], lengths[lo:hi])
            if self.config.tiebreak:
                values = _with_tiebreak_np(values, self._tiebreak_np[cols])
            out[rows + lo, cols] = values
        return out

    def _score_block_numpy(self, items: np.ndarray, lengths: np.ndarray) -> _NpEntries:
        """The non-zero float32 scores of a block through the index, with numpy: the scores of
        ``_score_block_indexed`` bit for bit (the same sums in the same order), found with
        less work: q·x from the index lists of the current items (at most m entries per
        distinct item) instead of reading every candidate's items."""
        ix = self._np
        assert ix is not None
        m, k, n_items, n_sess = self.sample_m, self.config.k, self.n_items, ix.n_sess
        n_b = items.shape[0]
        qy = self._query(items, lengths)
        # candidates: the m most recent (lowest index) sessions of the current items' lists.
        # A candidate is in the (truncated) list of every current item it holds (module doc),
        # so the lists alone give q·x: each list entry adds its item's weight to its session,
        # in item order (the order of the dense path's sums), and the latest shared position
        qb = qy.keys // n_items
        flat, owner = _expand_rows_np(ix.recent_indptr, qy.keys % n_items)
        keys = qb[owner] * n_sess + ix.recent_indices[flat]
        cand, inverse, dot = _group_sum_np(keys, qy.weights[owner], n_b * n_sess)
        cand_b, cand_s = cand // n_sess, cand % n_sess
        keep = _rank_within_np(cand_b, n_b) < m
        cand_b, cand_s, dot = cand_b[keep], cand_s[keep], dot[keep]
        if self.config.similarity == "cosine":
            sims = dot / ix.session_norm[cand_s] / qy.denom[cand_b]
        else:
            sims = dot / qy.denom[cand_b]
        # neighbours: the k largest per query, ties → the more recent (lower index) session
        order = np.lexsort((cand_s, -sims, cand_b))
        nb = order[(_rank_within_np(cand_b[order], n_b) < k) & (sims[order] > 0)]
        nb.sort()  # back to (query, session) order
        weight = sims[nb]
        if self._has_decay():  # the latest shared position (+1) of each candidate
            if inverse is None:  # grouped densely: by key
                latest = np.zeros(n_b * n_sess, dtype=np.int64)
                np.maximum.at(latest, keys, qy.positions[owner] + 1)
                shared = latest[cand]
            else:
                shared = np.zeros(cand.size, dtype=np.int64)
                np.maximum.at(shared, inverse, qy.positions[owner] + 1)
            weight = weight * self._neighbour_decay(lengths[cand_b[nb]] - shared[keep][nb])
        # the scores: each neighbour's weight summed onto each of its items, in order
        flat, owner = _expand_rows_np(ix.sess_indptr, cand_s[nb])
        dest = cand_b[nb][owner] * n_items + ix.sess_indices[flat]
        uniq, _, sums = _group_sum_np(dest, weight[owner], n_b * n_items)
        values = sums.astype(np.float32)
        cols = uniq % n_items
        if ix.item_weights is not None:
            values = values * ix.item_weights[cols]
        return uniq // n_items, cols, values

    def _score_block_indexed(self, items: torch.Tensor, lengths: torch.Tensor) -> _Entries:
        """The non-zero float32 scores of a block, through the item → recent-sessions index."""
        assert self.sessions is not None and self.recent_index is not None
        m, n_items = self.sample_m, self.n_items
        n_sess = self.sessions.n_rows
        n_b = items.shape[0]
        qy = self._query_torch(items, lengths)
        # candidates: the sessions in the index lists of the current items, once per query,
        # the m most recent (lowest session index) of each query
        qb = qy.keys // n_items
        flat, owner = expand_rows(self.recent_index.indptr, qy.keys % n_items)
        key = torch.unique(qb[owner] * n_sess + self.recent_index.indices[flat])  # sorted
        cand_b, cand_s = key // n_sess, key % n_sess
        keep = _rank_within(cand_b, n_b) < m
        cand_b, cand_s = cand_b[keep], cand_s[keep]
        # their items, looked up among the current ones: q·x (exact float64 sums) and the
        # latest position of a shared item
        flat, owner = expand_rows(self.sessions.indptr, cand_s)
        at = cand_b[owner] * n_items + self.sessions.indices[flat]
        hit_at = torch.searchsorted(qy.keys, at).clamp_max(max(qy.keys.numel() - 1, 0))
        hit = qy.keys[hit_at] == at if qy.keys.numel() else torch.zeros_like(at, dtype=torch.bool)
        owner, hit_at = owner[hit], hit_at[hit]
        dot = torch.zeros(cand_s.numel(), dtype=torch.float64, device=self.device)
        dot.index_add_(0, owner, qy.weights[hit_at])
        if self.config.similarity == "cosine":  # the dense path's operations, in its order
            sims = dot / self._session_norm[cand_s] / qy.denom[cand_b]
        else:
            sims = dot / qy.denom[cand_b]
        # neighbours: the k largest per query, ties → the more recent session (lower index);
        # two stable sorts order (query, −similarity, session) as cand_s is ascending per query
        by_sim = torch.sort(-sims, stable=True).indices
        order = by_sim[torch.sort(cand_b[by_sim], stable=True).indices]
        nb = order[(_rank_within(cand_b[order], n_b) < self.config.k) & (sims[order] > 0)]
        nb = torch.sort(nb).values  # back to (query, session) order, as the dense path sums
        weight = sims[nb]
        if self._has_decay():
            shared = torch.zeros(cand_s.numel(), dtype=torch.long, device=self.device)
            shared.scatter_reduce_(0, owner, qy.positions[hit_at] + 1, "amax")
            weight = weight * self._neighbour_decay_torch(lengths[cand_b[nb]] - shared[nb])
        return self._item_scores(cand_b[nb], cand_s[nb], weight)

    def _item_scores(
        self, nb_b: torch.Tensor, nb_s: torch.Tensor, weight: torch.Tensor
    ) -> _Entries:
        """The non-zero float32 scores: each neighbour's weight summed onto each of its items.

        Both paths call this with the same neighbours in (query, session) order; the sums run
        in that order (a 1-D float64 ``index_add_`` adds in index order on the CPU), so equal
        neighbourhoods give bit-equal scores.

        Args:
            nb_b: (N,) the query of each neighbour; nb_s: (N,) its session; weight: (N,)
                float64 its similarity × decay.

        Returns:
            rows, items (U,) int64 and their float32 scores (U,).
        """
        assert self.sessions is not None
        flat, owner = expand_rows(self.sessions.indptr, nb_s)
        dest = nb_b[owner] * self.n_items + self.sessions.indices[flat]
        uniq, inverse = torch.unique(dest, return_inverse=True)
        sums = torch.zeros(uniq.numel(), dtype=torch.float64, device=self.device)
        sums.index_add_(0, inverse, weight[owner])
        cols = uniq % self.n_items
        values = sums.float()
        if self.item_weights is not None:
            values = values * self.item_weights[cols]
        return uniq // self.n_items, cols, values

    def _score_block(self, items: torch.Tensor, lengths: torch.Tensor) -> _Entries:
        """The non-zero float32 scores of a block, against every training session."""
        assert self.sessions is not None and self.item_sessions is not None
        cfg = self.config
        n_b = items.shape[0]
        qy = self._query_torch(items, lengths)
        q_b, q_i = qy.keys // self.n_items, qy.keys % self.n_items
        last_pos = torch.full((n_b, self.n_items), -1, dtype=torch.long, device=self.device)
        last_pos[q_b, q_i] = qy.positions
        # q (b, n_items) dense; (b, S) q·x as the sparse (S, n_items) sessions times qᵀ
        q = torch.zeros(n_b, self.n_items, dtype=torch.float64, device=self.device)
        q[q_b, q_i] = qy.weights
        sims = _spmm(self._sessions_t, q)
        if cfg.similarity == "cosine":
            sims = sims / self._session_norm.unsqueeze(0) / qy.denom.unsqueeze(1)
        else:
            sims = sims / qy.denom.unsqueeze(1)
        n_sess = sims.shape[1]
        if 0 < self.sample_m < n_sess:
            # only the most recent sessions sharing an item are candidates (lower index = more
            # recent); the others drop to similarity 0, i.e. out of the neighbourhood
            recency = torch.arange(n_sess, 0, -1, device=self.device).unsqueeze(0)
            cand = torch.topk(torch.where(sims > 0, recency, 0), self.sample_m, dim=1).indices
            sims = torch.zeros_like(sims).scatter_(1, cand, sims.gather(1, cand))
        nb_b, nb_s = torch.nonzero(_top_k_mask(sims, cfg.k), as_tuple=True)  # (b, S) order
        weight = sims[nb_b, nb_s]
        if self._has_decay():
            dist = self._shared_distance(last_pos, lengths)
            weight = weight * self._neighbour_decay_torch(dist[nb_b, nb_s])
        return self._item_scores(nb_b, nb_s, weight)

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


@dataclass(frozen=True)
class _Query:
    """A block of current sessions, as (row, item) entries: each distinct item once (numpy
    arrays, or tensors on the model's device for the torch paths).

    Attributes:
        keys: (Q,) int64 ``row · n_items + item``, sorted.
        positions: (Q,) int64 the item's latest position in the session.
        weights: (Q,) float64 its weight (float32 values).
        denom: (b,) float64 the similarity's divisor: ‖q‖ (cosine) or the distinct items (dot).
    """

    keys: Any
    positions: Any
    weights: Any
    denom: Any


#: non-zero scores of a block: rows (U,), items (U,), float32 values (U,)
_Entries = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
_NpEntries = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _NumpyIndex:
    """What the numpy path reads: numpy views of the model's CPU tensors (no copies)."""

    n_sess: int
    sess_indptr: np.ndarray
    sess_indices: np.ndarray
    recent_indptr: np.ndarray
    recent_indices: np.ndarray
    session_norm: np.ndarray
    item_weights: np.ndarray | None


def _expand_rows_np(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_sparse.expand_rows`` in numpy: the entry positions of CSR ``rows`` and their owner."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    owner = np.repeat(np.arange(rows.size), lengths)
    block_start = np.cumsum(lengths) - lengths
    return starts[owner] + np.arange(owner.size) - block_start[owner], owner


def _unique_inverse_np(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(x, return_inverse=True)`` by one stable sort."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.ones(x.size, dtype=bool)
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    inverse = np.empty(x.size, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return xs[new], inverse


#: ``_group_sum_np`` groups densely (an array over every possible key) when the key space
#: is at most this many times the keys: then two linear passes beat one sort
_DENSE_GROUPING = 16


def _group_sum_np(
    keys: np.ndarray, weights: np.ndarray, space: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The sorted distinct ``keys`` (all in ``[0, space)``) and the float64 sum of the
    ``weights`` of each, summed in the order of ``keys`` (so either way gives the same bits).

    Returns the inverse (each key's group) too when grouping by a sort; None when grouping
    densely (one bin per possible key, for a small key space: a served session's block)."""
    if space <= _DENSE_GROUPING * keys.size:
        present = np.zeros(space, dtype=bool)
        present[keys] = True
        distinct = np.flatnonzero(present)
        return distinct, None, np.bincount(keys, weights=weights, minlength=space)[distinct]
    distinct, inverse = _unique_inverse_np(keys)
    return distinct, inverse, np.bincount(inverse, weights=weights, minlength=distinct.size)


def _rank_within_np(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``_rank_within`` in numpy."""
    counts = np.bincount(groups, minlength=n_groups)
    return np.arange(groups.size) - (np.cumsum(counts) - counts)[groups]


def _with_tiebreak_np(scores: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """``_sparse.with_tiebreak`` in numpy (float64, CPU): the same values bit for bit."""
    s = scores.astype(np.float64)
    _, exp = np.frexp(s)
    exp = np.where(s == 0, _MIN_EXP32, np.maximum(exp, _MIN_EXP32))
    return s + np.ldexp(tiebreak, exp - 26)


def _rank_within(groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """(N,) position of each entry within its run of equal ``groups`` (sorted ascending)."""
    counts = torch.bincount(groups, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(groups.numel(), device=groups.device) - starts[groups]


def _first_per_row(m: CSR, n: int) -> CSR:
    """The first ``n`` entries of each row (the ``n`` most recent sessions of each item)."""
    starts = m.indptr[:-1]
    lengths = m.indptr.diff().clamp_max(n)
    indptr = torch.zeros_like(m.indptr)
    indptr[1:] = torch.cumsum(lengths, 0)
    owner = torch.repeat_interleave(torch.arange(m.n_rows, device=m.indptr.device), lengths)
    flat = starts[owner] + torch.arange(owner.numel(), device=owner.device) - indptr[owner]
    return CSR(indptr, m.indices[flat], m.data[flat], m.n_cols)


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
    dense = (last_pos + 1).t().to(sessions_t.dtype)
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
