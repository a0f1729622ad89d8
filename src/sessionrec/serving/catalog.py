"""A served model: the loaded model, its item table, fast title lookup and search.

Titles resolve by the one matcher every surface uses (``sessionrec._titles.TitleIndex``: id,
exact title, title without its year, any case, articles moved, any words of the title), from
dictionaries built once, so a request costs a few lookups instead of a scan of the catalogue.
On a miss the error comes from ``resolve_items`` itself, so the message (closest titles) is the
one ``recommend`` prints.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from sessionrec import _schema as S
from sessionrec._titles import TitleIndex, fold
from sessionrec.recommend import ItemLookupError, resolve_items

__all__ = ["LookupFailed", "ServedModel", "fold"]


class LookupFailed(Exception):
    """An item that is unknown (``closest`` lists the nearest titles) or ambiguous."""

    def __init__(self, message: str, *, ambiguous: bool, candidates: list[str]) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous
        self.candidates = candidates


@dataclass
class ServedModel:
    """One model folder as the service holds it.

    Attributes:
        name: the folder name (``model=NAME`` in requests).
        path: the folder.
        model: the loaded ``SessionModel``.
        generation: a number that changes whenever the folder is (re)loaded; cached streaming
            states of another generation are rebuilt.
    """

    name: str
    path: Path
    model: Any
    generation: int

    def __post_init__(self) -> None:
        #: the folder's files as loaded (``folder_problems`` compares the folder with it)
        self.loaded_files = folder_state(self.path)
        items = self.model.items
        if items is None:
            items = pl.DataFrame({S.ITEM_IDX: range(self.model.n_items)}).with_columns(
                pl.col(S.ITEM_IDX).alias(S.ITEM)
            )
        self.items = items.sort(S.ITEM_IDX)
        n = self.model.n_items
        ids = self.items[S.ITEM].to_list()
        self.ids: list[Any] = ids
        self.id_of_idx = {i: ids[i] for i in range(len(ids))}
        self.idx_of_id = {str(v): i for i, v in enumerate(ids)}
        cols = self.items.columns
        self.titles: list[str | None] = (
            self.items[S.TITLE].to_list() if S.TITLE in cols else [None] * n
        )
        self.years: list[int | None] = (
            [None if y is None else int(y) for y in self.items[S.YEAR].to_list()]
            if S.YEAR in cols
            else [None] * n
        )
        self.genres: list[list[str]] = (
            [list(g or []) for g in self.items[S.GENRES].to_list()]
            if S.GENRES in cols
            else [[] for _ in range(n)]
        )
        counts = (
            self.items["count"].to_numpy().astype(np.float64)
            if "count" in cols
            else np.zeros(n, dtype=np.float64)
        )
        self.counts = counts
        self.titles_index = TitleIndex(self.titles, counts)
        self.item_dicts = [self.item_json(i) for i in range(n)]
        # Each item's JSON written once: a response is then joined from these strings
        # (``objects``: ``{...}``; ``fields``: the same without its braces, to splice rank and
        # score around). The same text ``json.dumps`` writes (tests compare the bytes).
        self.item_objects = [json_text(d) for d in self.item_dicts]
        self.item_fields = [o[1:-1] for o in self.item_objects]
        # one (1,) index tensor per item, made once: a request steps the model with a view
        self._index = torch.arange(n, dtype=torch.long, device=self.model.device)
        self.first_row = torch.zeros(1, dtype=torch.long, device=self.model.device)
        # the kNN "because": training sessions of each item, when the model keeps them
        self._item_sessions = getattr(self.model, "item_sessions", None)
        self._scratch: np.ndarray | None = None  # ``because``'s bits, one int64 a session
        self._scratch_lock = threading.Lock()
        if self._item_sessions is not None:
            self._sess_indptr = self._item_sessions.indptr.cpu().numpy()
            self._sess_indices = self._item_sessions.indices.cpu().numpy()

    def index_tensor(self, idx: int) -> torch.Tensor:
        """``torch.tensor([idx])`` on the model's device, without building a tensor."""
        return self._index[idx : idx + 1]

    @property
    def kind(self) -> str:
        return str(getattr(self.model, "name", type(self.model).__name__))

    @property
    def is_knn(self) -> bool:
        return self._item_sessions is not None

    # -- lookup -----------------------------------------------------------------------------
    def resolve(self, entry: int | str) -> int:
        """The item index of an id or title (``recommend``'s rules); raises ``LookupFailed``."""
        key = str(entry).strip()
        if not isinstance(entry, str) and key in self.idx_of_id:  # a number: an id, never a title
            return self.idx_of_id[key]
        hits = self._title_hits(key)
        if key in self.idx_of_id and not (isinstance(entry, str) and hits):
            return self.idx_of_id[key]
        if len(hits) == 1:
            return hits[0]
        if not hits and key in self.idx_of_id:
            return self.idx_of_id[key]
        try:  # the slow path: recommend's own rules and words
            return resolve_items(self.items, [entry])[0]
        except ItemLookupError as exc:
            if hits:
                cands = [f"{self.titles[h]}" for h in hits[:8]]
                raise LookupFailed(str(exc), ambiguous=True, candidates=cands) from None
            raise LookupFailed(str(exc), ambiguous=False, candidates=self.closest(key)) from None

    def _title_hits(self, key: str) -> list[int]:
        """The items a title names (``TitleIndex.matches``: the rules of every surface)."""
        return self.titles_index.matches(key)

    def closest(self, key: str) -> list[str]:
        """The titles ``recommend`` names as closest to ``key``."""
        return self.titles_index.closest(key)

    def search(self, q: str, limit: int) -> list[int]:
        """Item indices whose title holds every word of ``q`` (case and accents ignored, words
        may be partial), titles starting with the query first, then by training popularity."""
        return self.titles_index.search(q, limit)

    def item_json(self, idx: int) -> dict[str, Any]:
        return {
            "item_id": self.id_of_idx[idx],
            "title": self.titles[idx],
            "year": self.years[idx],
            "genres": self.genres[idx],
        }

    # -- explanation ------------------------------------------------------------------------
    def because(self, session: list[int], recommended: list[int], most: int = 2) -> list[list[int]]:
        """For each recommended item, the session items (at most ``most``, latest first) that
        share the most training sessions with it: the items that led kNN to it.

        The counts of shared training sessions of every (recommended, session item) pair
        come from a bit per session item set in a per-model array over training sessions
        (``because_reference`` is the loop of set intersections it replaces)."""
        if self._item_sessions is None or not session:
            return [[] for _ in recommended]
        if not recommended:
            return []
        indptr, indices = self._sess_indptr, self._sess_indices
        distinct = np.fromiter(dict.fromkeys(reversed(session)), dtype=np.int64)  # latest first
        a, lengths = _rows(indptr, indices, distinct.tolist())  # each session item's sessions
        full = lengths > 0
        starts = (np.cumsum(lengths) - lengths)[full]  # of the session items in ``a``
        counts = np.zeros((len(recommended), len(distinct)), dtype=np.int64)
        with self._scratch_lock:
            if self._scratch is None:
                self._scratch = np.zeros(self._item_sessions.n_cols, dtype=np.int64)
            mark = self._scratch
            # the recommended items' sessions get one bit each, 62 items a pass (usually one:
            # k is small), then the session items' sessions read the bits back
            for lo in range(0, len(recommended), 62):
                part = recommended[lo : lo + 62]
                b, n = _rows(indptr, indices, part)
                owner = np.repeat(np.arange(len(part), dtype=np.int64), n)
                np.bitwise_or.at(mark, b, np.left_shift(1, owner))
                if len(a):
                    bits = (mark[a][:, None] >> np.arange(len(part))) & 1  # (len(a), len(part))
                    counts[lo : lo + len(part), full] = np.add.reduceat(bits, starts, axis=0).T
                mark[b] = 0
        order = np.argsort(-counts, axis=1, kind="stable")[:, :most].tolist()  # ties: latest
        out = []
        for row, c in zip(order, counts.tolist(), strict=True):
            out.append([int(distinct[j]) for j in row if c[j] > 0])
        return out

    def because_reference(
        self, session: list[int], recommended: list[int], most: int = 2
    ) -> list[list[int]]:
        """``because`` as a plain loop of set intersections (the reference the tests hold
        the fast version to)."""
        sess = self._item_sessions
        if sess is None or not session:
            return [[] for _ in recommended]
        indptr, indices = self._sess_indptr, self._sess_indices

        def sessions_of(i: int) -> np.ndarray:
            return indices[indptr[i] : indptr[i + 1]]

        distinct = list(dict.fromkeys(reversed(session)))  # latest first, once each
        own = {i: sessions_of(i) for i in distinct}
        out = []
        for r in recommended:
            theirs = sessions_of(r)
            shared = [
                (len(np.intersect1d(own[i], theirs, assume_unique=True)), i) for i in distinct
            ]
            ranked = sorted((s for s in shared if s[0] > 0), key=lambda s: -s[0])  # stable
            out.append([i for _, i in ranked[:most]])
        return out


def _rows(
    indptr: np.ndarray, indices: np.ndarray, rows: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The entries of CSR ``rows``, concatenated, and each row's length."""
    parts = [indices[indptr[i] : indptr[i + 1]] for i in rows]
    if not parts:
        return indices[:0], np.zeros(0, dtype=np.int64)
    return np.concatenate(parts), np.array([len(p) for p in parts], dtype=np.int64)


def json_text(value: Any) -> str:
    """JSON as the service writes it: UTF-8 text, no spaces, NaN refused."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def folder_state(path: Path) -> dict[str, tuple[int, int]]:
    """Each file of a model folder: (size, modification time in ns); empty when unreadable."""
    try:
        return {
            f.name: (st.st_size, st.st_mtime_ns)
            for f in path.iterdir()
            if f.is_file() and (st := f.stat())
        }
    except OSError:
        return {}


def folder_problems(path: Path, loaded: dict[str, tuple[int, int]]) -> list[str]:
    """How a served model's folder differs from what was loaded from it (the loaded model
    keeps serving; a reload would read the folder as it is now)."""
    if not path.is_dir():
        return [f"{path.name}: the folder is gone (the loaded model keeps serving)"]
    now = folder_state(path)
    out = []
    for name in sorted(loaded):
        if name not in now:
            out.append(f"{name}: removed since the model was loaded")
        elif now[name] != loaded[name]:
            out.append(f"{name}: changed since the model was loaded")
    return out


def model_info(path: Path, model: Any) -> dict[str, Any]:
    """What ``/v1/models`` says of a folder: model, parameters, training data and any
    ``evaluate --json`` results found in it. The files are read as strict JSON, each on its
    own: a damaged or foreign one is listed in ``problems``, never an error of the route."""
    import dataclasses

    from sessionrec.serving.bodies import BadBody, read_json

    problems: list[str] = []

    def read(f: Path) -> Any:
        try:
            return read_json(f.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, BadBody) as exc:
            problems.append(f"{f.name}: {str(exc).splitlines()[0] if str(exc) else exc}")
            return None

    info: dict[str, Any] = {"model": getattr(model, "name", None), "n_items": model.n_items}
    cfg = getattr(model, "config", None)
    if cfg is not None and dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        info["parameters"] = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    meta = read(path / "data_meta.json")
    if meta is not None:
        info["data"] = meta
    evaluations = []
    try:
        files = sorted(path.glob("*.json"))
    except OSError as exc:
        problems.append(f"{path.name}: cannot be listed ({exc})")
        files = []
    for f in files:
        if f.name in ("config.json", "data_meta.json", "training.json"):
            continue
        raw = read(f)
        if isinstance(raw, dict) and "predictions" in raw and "protocol" in raw:
            keep = {k: v for k, v in raw.items() if k in ("predictions", "split", "protocol")}
            keep["metrics"] = {
                k: v for k, v in raw.items() if "@" in k and isinstance(v, int | float)
            }
            keep["file"] = f.name
            evaluations.append(keep)
    info["evaluations"] = evaluations
    training = read(path / "training.json")
    if training is not None:
        info["training"] = training
    info["problems"] = problems
    return info
