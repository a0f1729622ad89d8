"""Top-k retrieval over item vectors: exact (torch) or approximate (faiss HNSW).

Models whose next-item score is an inner product, ``score(state) = query(state) · item``,
declare it with :class:`VectorScorer` (``query_vectors`` / ``item_vectors``): ``two-tower``
(the query tower against candidate embeddings), ``bpr`` and ``als`` (the mean of a session's
item factors, with a constant 1 meeting the item bias). For them an :class:`ItemIndex` answers
"the k best items for these queries" without scoring the whole catalogue:

- :class:`ExactIndex` (default): a matrix product and ``torch.topk``, in blocks of queries;
- :class:`HNSWIndex`: faiss's HNSW graph over inner products (``pip install "sessionrec[ann]"``),
  for catalogues where an exact product per query is too slow. It is approximate: measure it
  with :func:`index_recall` (the share of the exact top-k it returns), as ``sessionrec index``
  does and records in the index directory.

:class:`IndexedModel` wraps a model and its index as a model whose ``score`` keeps only the
index's top ``depth`` items (the rest score ``-inf``), so the ordinary evaluator measures the
next-item metrics of the approximate retrieval exactly as it is served.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import torch

from sessionrec._io import output_dir, read_json_object
from sessionrec.errors import ConfigError, DataError, SessionrecError
from sessionrec.models.base import EpochCallback, SessionModel
from sessionrec.prepare.data import SessionData

log = logging.getLogger(__name__)

INDEX_FORMAT = "sessionrec.item-index/1"


@runtime_checkable
class VectorScorer(Protocol):
    """A model whose ``score(state)`` equals ``query_vectors(state) @ item_vectors().T``."""

    def query_vectors(self, state: Any) -> torch.Tensor:
        """(B, D) query vectors of a streaming state."""
        ...

    def item_vectors(self) -> torch.Tensor:
        """(n_items, D) item vectors."""
        ...


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


class ItemIndex(ABC):
    """Inner-product top-k search over ``n_items`` item vectors of dimension ``dim``."""

    kind: ClassVar[str]

    def __init__(self, items: np.ndarray | torch.Tensor) -> None:
        vectors = _as_numpy(items)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ConfigError(f"an index needs (n_items, dim) vectors, not shape {vectors.shape}")
        self.n_items, self.dim = vectors.shape
        self.build_seconds = 0.0

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) scores and item indices (−1 where fewer than k were found), best first."""

    def search(
        self,
        queries: np.ndarray | torch.Tensor,
        k: int,
        exclude: Sequence[Sequence[int]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items for each query.

        Args:
            queries: (B, dim) query vectors.
            k: how many items per query.
            exclude: per query, items never to return (e.g. the session's own items); the
                search over-fetches by their number so ``k`` remain when the index finds them.

        Returns:
            (B, k) float32 scores and (B, k) int64 item indices, best first; index −1 and
            score −inf pad rows where fewer than ``k`` items were found.
        """
        q = _as_numpy(queries)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ConfigError(f"queries must have shape (B, {self.dim}), not {q.shape}")
        if exclude is not None and len(exclude) != len(q):
            raise ConfigError(f"exclude has {len(exclude)} entries for {len(q)} queries")
        k = min(int(k), self.n_items)
        extra = max((len(set(e)) for e in exclude), default=0) if exclude is not None else 0
        scores, idx = self._search(q, min(k + extra, self.n_items))
        if exclude is not None:
            for row, banned in enumerate(exclude):
                if banned:
                    drop = np.isin(idx[row], np.fromiter(banned, dtype=np.int64))
                    keep = np.r_[idx[row][~drop], np.full(drop.sum(), -1)]
                    vals = np.r_[scores[row][~drop], np.full(drop.sum(), -np.inf)]
                    idx[row], scores[row] = keep, vals
        scores, idx = scores[:, :k], idx[:, :k]
        scores[idx < 0] = -np.inf
        return scores.astype(np.float32), idx.astype(np.int64)

    # -- persistence ------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | Path, *, overwrite: bool = False, **info: Any) -> Path:
        """Write the index directory (``index.json`` plus the kind's files) atomically.

        ``path`` must be new or empty, or (with ``overwrite``) an index sessionrec wrote.
        """
        path = Path(path)
        with output_dir(path, overwrite=overwrite, verb="index") as tmp:
            self._save(tmp)
            meta = {
                "format": INDEX_FORMAT,
                "kind": self.kind,
                "n_items": self.n_items,
                "dim": self.dim,
                "params": self.params(),
                "build_seconds": self.build_seconds,
                **info,
            }
            (tmp / "index.json").write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @abstractmethod
    def _save(self, directory: Path) -> None: ...

    @abstractmethod
    def stored_vectors(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), dim) the indexed vectors of items ``rows``."""

    def session_scores(
        self, model: SessionModel, session: Sequence[int], k: int, *, exclude_seen: bool = True
    ) -> torch.Tensor:
        """(n_items,) scores of one session (item indices) through the index: the ``k`` items
        found for the model's query vector keep their scores, every other item is ``-inf``
        (the session's own items are never found when ``exclude_seen``). What
        ``SessionModel.recommend(..., index=...)`` ranks."""
        self.check_model(model)
        query = session_queries(model, [session])
        values, found = self.search(query, k, exclude=[session] if exclude_seen else None)
        scores = torch.full((model.n_items,), -torch.inf)
        keep = found[0] >= 0
        scores[torch.from_numpy(found[0][keep])] = torch.from_numpy(values[0][keep])
        return scores

    def check_model(self, model: SessionModel, probes: int = 64) -> None:
        """Raise unless this index holds ``model``'s item vectors (compared on ``probes``
        evenly spaced items, to float32 tolerance): a model retrained since the index was
        built is refused instead of being served stale neighbours."""
        vectors = item_vectors(model)
        if tuple(vectors.shape) != (self.n_items, self.dim):
            raise ConfigError(
                f"the index holds {self.n_items} × {self.dim} vectors, the model "
                f"{vectors.shape[0]} × {vectors.shape[1]}: rebuild it (sessionrec index)"
            )
        rows = np.unique(np.linspace(0, self.n_items - 1, probes).astype(np.int64))
        mine = _as_numpy(vectors[torch.from_numpy(rows).to(vectors.device)])
        if not np.allclose(self.stored_vectors(rows), mine, rtol=1e-4, atol=1e-5):
            raise ConfigError(
                "the index was built from other item vectors than the model's (retrained "
                "since?): rebuild it (sessionrec index)"
            )


class ExactIndex(ItemIndex):
    """Exact top-k: one (block, n_items) product per block of queries, then ``torch.topk``."""

    kind = "exact"

    def __init__(self, items: np.ndarray | torch.Tensor, *, block: int = 1024) -> None:
        super().__init__(items)
        self.vectors = torch.from_numpy(_as_numpy(items))
        self.block = block

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.from_numpy(queries)
        scores = np.empty((len(q), k), dtype=np.float32)
        idx = np.empty((len(q), k), dtype=np.int64)
        for a in range(0, len(q), self.block):
            top = torch.topk(q[a : a + self.block] @ self.vectors.T, k, dim=1)
            scores[a : a + self.block] = top.values.numpy()
            idx[a : a + self.block] = top.indices.numpy()
        return scores, idx

    def stored_vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.vectors.numpy()[rows]

    def _save(self, directory: Path) -> None:
        np.save(directory / "vectors.npy", self.vectors.numpy())

    @classmethod
    def _load(cls, directory: Path, meta: dict[str, Any]) -> ExactIndex:
        return cls(np.load(directory / "vectors.npy"))


def _faiss() -> Any:
    from sessionrec._optional import require

    return require("faiss")


class HNSWIndex(ItemIndex):
    """faiss ``IndexHNSWFlat`` over inner products (Malkov & Yashunin, 2018).

    Args:
        items: (n_items, dim) item vectors.
        m: graph degree (links per node); more → better recall, more memory.
        ef_construction: candidate list while building; more → a better graph, slower build.
        ef_search: candidate list while searching (at least the k asked for); the recall /
            speed knob that can change after building.
        threads: faiss OpenMP threads for building and searching (None: faiss's default).
            Building with several threads may insert in a different order between runs.
    """

    kind = "hnsw"

    def __init__(
        self,
        items: np.ndarray | torch.Tensor,
        *,
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        threads: int | None = None,
    ) -> None:
        super().__init__(items)
        faiss = _faiss()
        if m < 2 or ef_construction < 1 or ef_search < 1:
            raise ConfigError("hnsw needs m >= 2, ef_construction >= 1 and ef_search >= 1")
        self.m, self.ef_construction, self.ef_search, self.threads = (
            m,
            ef_construction,
            ef_search,
            threads,
        )
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        started = time.perf_counter()
        self.index = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.add(_as_numpy(items))
        self.build_seconds = time.perf_counter() - started

    def params(self) -> dict[str, Any]:
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.hnsw.efSearch = max(self.ef_search, k)
        scores, idx = self.index.search(queries, k)
        return np.asarray(scores, dtype=np.float32), np.asarray(idx, dtype=np.int64)

    def stored_vectors(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self.index.reconstruct(int(r)) for r in rows])

    def _save(self, directory: Path) -> None:
        _faiss().write_index(self.index, str(directory / "hnsw.faiss"))

    @classmethod
    def _load(cls, directory: Path, meta: dict[str, Any]) -> HNSWIndex:
        faiss = _faiss()
        self = cls.__new__(cls)
        self.index = faiss.read_index(str(directory / "hnsw.faiss"))
        self.n_items, self.dim = int(meta["n_items"]), int(meta["dim"])
        p = meta["params"]
        self.m, self.ef_construction, self.ef_search = p["m"], p["ef_construction"], p["ef_search"]
        self.threads = None
        self.build_seconds = float(meta.get("build_seconds", 0.0))
        return self


INDEXES: dict[str, type[ItemIndex]] = {"exact": ExactIndex, "hnsw": HNSWIndex}


def item_vectors(model: SessionModel) -> torch.Tensor:
    """The model's (n_items, D) item vectors; a clear error for models without them."""
    if not isinstance(model, VectorScorer):
        raise ConfigError(
            f"{model.name} does not score by an inner product of query and item vectors; "
            "an item index serves two-tower, bpr and als"
        )
    return model.item_vectors()


def build_index(model: SessionModel, kind: str = "exact", **params: Any) -> ItemIndex:
    """An index of ``model``'s item vectors (``kind`` ``exact`` or ``hnsw``; ``params`` go to
    the index class, e.g. ``m``, ``ef_construction``, ``ef_search`` for hnsw)."""
    if kind not in INDEXES:
        raise ConfigError(f"index kind must be one of {', '.join(INDEXES)}, not {kind!r}")
    return INDEXES[kind](item_vectors(model), **params)


def load_index(path: str | Path) -> ItemIndex:
    """An index directory written by :meth:`ItemIndex.save`."""
    path = Path(path)
    meta_path = path / "index.json"
    if not meta_path.exists():
        raise DataError(path, expected="an item index directory with index.json", found="none")
    meta = read_json_object(meta_path)
    if meta.get("format") != INDEX_FORMAT or meta.get("kind") not in INDEXES:
        raise DataError(
            meta_path,
            expected=f"format {INDEX_FORMAT} of kind {'/'.join(INDEXES)}",
            found=f"{meta.get('format')} / {meta.get('kind')}",
        )
    cls: Any = INDEXES[meta["kind"]]
    try:
        index: ItemIndex = cls._load(path, meta)
    except SessionrecError:
        raise
    except Exception as exc:  # a truncated vector file, faiss' RuntimeError, a missing key
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(path, expected=f"a {meta['kind']} index's files", found=first) from None
    return index


def index_recall(
    approx: ItemIndex, exact: ItemIndex, queries: np.ndarray | torch.Tensor, k: int
) -> float:
    """Mean share of the exact top-``k`` that ``approx`` returns (recall@k against exact).

    Ties at the exact k-th score make "the" exact top-k ambiguous; an approximate item whose
    score equals the exact k-th score (to float32 precision) counts as found.
    """
    q = _as_numpy(queries)
    vectors = _exact_vectors(exact)
    _, a_idx = approx.search(q, k)
    e_scores, e_idx = exact.search(q, k)
    valid = a_idx >= 0
    in_exact = (a_idx[:, :, None] == e_idx[:, None, :]).any(2) & valid  # (B, k)
    # the exact scores of what approx returned (B, k, dim gathered, not the whole catalogue)
    a_scores = np.einsum("bd,bkd->bk", q, vectors[np.maximum(a_idx, 0)])
    kth = e_scores[:, -1:]
    # float32 products in another order can differ in the last bits: ties within 1e-6 relative
    tied = valid & ~in_exact & (a_scores >= kth - 1e-6 * np.maximum(1.0, np.abs(kth)))
    found = np.minimum(k, in_exact.sum(1) + tied.sum(1))
    return float(found.sum()) / (len(q) * k)


def _exact_vectors(index: ItemIndex) -> np.ndarray:
    if not isinstance(index, ExactIndex):
        raise ConfigError("index_recall measures against an ExactIndex")
    return index.vectors.numpy()


class IndexedModel(SessionModel):
    """``model`` served through ``index``: ``score`` keeps the index's top ``depth`` items.

    Every other item scores ``-inf``, so the evaluator ranks a target the index did not
    retrieve below all that it did (the conservative tie rule puts it last): Recall@k and
    MRR@k for k ≤ ``depth`` are then those of the approximate retrieval.
    """

    name = "indexed"
    Config = dict

    def __init__(self, model: SessionModel, index: ItemIndex, depth: int = 100) -> None:
        index.check_model(model)
        super().__init__({}, device=model.device)
        self.model, self.index, self.depth = model, index, depth
        self.n_items, self.items = model.n_items, model.items

    def fit(
        self,
        train: SessionData,
        valid: SessionData | None = None,
        *,
        callback: EpochCallback | None = None,
    ) -> Self:
        raise SessionrecError("fit the wrapped model, then build its index")

    def start(self, batch_size: int) -> Any:
        return self.model.start(batch_size)

    def reset(self, state: Any, mask: torch.Tensor) -> Any:
        return self.model.reset(state, mask)

    def step(self, state: Any, items: torch.Tensor) -> Any:
        return self.model.step(state, items)

    @torch.no_grad()
    def score(self, state: Any) -> torch.Tensor:
        model: Any = self.model
        return self._scores(model.query_vectors(state))

    @torch.no_grad()
    def score_rows(self, state: Any, rows: torch.Tensor) -> torch.Tensor:
        model: Any = self.model
        return self._scores(model.query_vectors(state)[rows.to(self.device)])

    def _scores(self, q: torch.Tensor) -> torch.Tensor:
        scores, idx = self.index.search(q, self.depth)
        out = torch.full((len(idx), self.n_items), -torch.inf)
        rows = np.repeat(np.arange(len(idx)), idx.shape[1])
        found = idx.reshape(-1) >= 0
        out[rows[found], idx.reshape(-1)[found]] = torch.from_numpy(scores.reshape(-1)[found])
        return out.to(self.device)

    def save(self, path: str | Path) -> Path:
        raise SessionrecError("save the wrapped model (model.save) and the index (index.save)")

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return self.model.state_arrays()

    def load_state_arrays(self, arrays: dict[str, torch.Tensor]) -> None:
        self.model.load_state_arrays(arrays)


@torch.no_grad()
def session_queries(model: SessionModel, sessions: Sequence[Sequence[int]]) -> torch.Tensor:
    """(len(sessions), D) query vectors after each whole session (item indices).

    Sessions of equal length are stepped together as one batch.
    """
    item_vectors(model)
    vm: Any = model
    out: torch.Tensor | None = None
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(sessions):
        by_length.setdefault(len(s), []).append(i)
    for length, rows in by_length.items():
        state = model.start(len(rows))
        seqs = torch.tensor([list(sessions[i]) for i in rows], dtype=torch.long)
        for j in range(length):
            state = model.step(state, seqs.view(len(rows), length)[:, j].to(model.device))
        q = vm.query_vectors(state)
        if out is None:
            out = torch.empty(len(sessions), q.shape[1], device=q.device)
        out[rows] = q
    assert out is not None, "no sessions"
    return out


def prefix_sessions(data: SessionData, limit: int | None = 2000, seed: int = 0) -> list[list[int]]:
    """The prefixes that next-item evaluation predicts from (history before every target after
    a session's first event), or a seeded sample of ``limit`` of them."""
    pos = np.arange(data.n_events)
    start = np.repeat(data.offsets[:-1], data.lengths)
    at = pos[data.target & (pos > start)]
    if limit is not None and len(at) > limit:
        at = np.sort(np.random.default_rng(seed).choice(at, limit, replace=False))
    begin = np.repeat(data.offsets[:-1], data.lengths)[at]
    return [data.items[b:e].tolist() for b, e in zip(begin, at, strict=True)]


__all__ = [
    "INDEXES",
    "ExactIndex",
    "HNSWIndex",
    "IndexedModel",
    "ItemIndex",
    "VectorScorer",
    "build_index",
    "index_recall",
    "item_vectors",
    "load_index",
    "prefix_sessions",
    "session_queries",
]
