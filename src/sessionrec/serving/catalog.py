"""A served model: the loaded model, its item table, fast title lookup and search.

Titles resolve exactly as ``sessionrec.recommend.resolve_items`` resolves them (id, exact
title, title without its year, case-insensitive title), but from dictionaries built once, so a
request costs a few lookups instead of a scan of the catalogue. On a miss the error comes from
``resolve_items`` itself, so the message (closest titles) is the one ``recommend`` prints.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from sessionrec import _schema as S
from sessionrec.recommend import ItemLookupError, _closest, _core, resolve_items


def fold(text: str) -> str:
    """Lower-case, accents removed (``"Amélie"`` → ``"amelie"``): the search key of a title."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


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
        self._exact: dict[str, list[int]] = {}
        self._no_year: dict[str, list[int]] = {}
        self._lower: dict[str, list[int]] = {}
        self._cores: dict[str, list[int]] = {}
        for i, t in enumerate(self.titles):
            if not t:
                continue
            self._exact.setdefault(t, []).append(i)
            self._no_year.setdefault(t.rsplit(" (", 1)[0].strip().lower(), []).append(i)
            self._lower.setdefault(t.lower(), []).append(i)
            self._cores.setdefault(_core(t), []).append(i)
        self._folded = [fold(t) if t else "" for t in self.titles]
        self.item_dicts = [self.item_json(i) for i in range(n)]
        # the kNN "because": training sessions of each item, when the model keeps them
        self._item_sessions = getattr(self.model, "item_sessions", None)

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
        """``recommend._title_matches`` from the dictionaries: exact, without the year,
        any case, then articles moved either way."""
        if key in self._exact:
            return self._exact[key]
        low = key.lower()
        hits = self._no_year.get(low) or self._lower.get(low)
        if hits:
            return hits
        core = _core(key)
        return self._cores.get(core, []) if core else []

    def closest(self, key: str) -> list[str]:
        """The titles ``recommend`` names as closest to ``key``."""
        return _closest(self.titles, key)

    def search(self, q: str, limit: int) -> list[int]:
        """Item indices whose title holds every word of ``q`` (case and accents ignored, words
        may be partial), titles starting with the query first, then by training popularity."""
        words = fold(q).split()
        if not words:
            return []
        joined = " ".join(words)
        hits = [i for i, t in enumerate(self._folded) if t and all(w in t for w in words)]
        hits.sort(key=lambda i: (not self._folded[i].startswith(joined), -self.counts[i], i))
        return hits[:limit]

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
        share the most training sessions with it: the items that led kNN to it."""
        sess = self._item_sessions
        if sess is None or not session:
            return [[] for _ in recommended]
        indptr = sess.indptr.cpu().numpy()
        indices = sess.indices.cpu().numpy()

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
            ranked = sorted(
                (s for s in shared if s[0] > 0), key=lambda s: -s[0]
            )  # stable: ties keep the latest item first
            out.append([i for _, i in ranked[:most]])
        return out


def model_info(path: Path, model: Any) -> dict[str, Any]:
    """What ``/v1/models`` says of a folder: model, parameters, training data and any
    ``evaluate --json`` results found in it."""
    import dataclasses

    info: dict[str, Any] = {"model": getattr(model, "name", None), "n_items": model.n_items}
    cfg = getattr(model, "config", None)
    if cfg is not None and dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        info["parameters"] = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    meta = path / "data_meta.json"
    if meta.exists():
        raw = json.loads(meta.read_text())
        info["data"] = raw
    evaluations = []
    for f in sorted(path.glob("*.json")):
        if f.name in ("config.json", "data_meta.json", "training.json"):
            continue
        try:
            raw = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and "predictions" in raw and "protocol" in raw:
            keep = {k: v for k, v in raw.items() if k in ("predictions", "split", "protocol")}
            keep["metrics"] = {
                k: v for k, v in raw.items() if "@" in k and isinstance(v, int | float)
            }
            keep["file"] = f.name
            evaluations.append(keep)
    info["evaluations"] = evaluations
    training = path / "training.json"
    if training.exists():
        info["training"] = json.loads(training.read_text())
    return info


def scores_to_top(
    scores: torch.Tensor, k: int, exclude: list[int] | None
) -> tuple[list[int], list[float]]:
    """Top-``k`` item indices and scores of one (n_items,) vector, ``exclude`` masked out —
    as ``sessionrec.recommend.top_k_frame`` ranks them."""
    s = scores.detach()  # the model's dtype: the kNN baselines' float64 tie-break stays exact
    s = s.masked_fill(torch.isnan(s), -torch.inf)  # NaN is never served (as recommend)
    if exclude:
        s[torch.tensor(exclude, dtype=torch.long, device=s.device)] = -torch.inf
    k = min(k, int(torch.isfinite(s).sum()))
    top = torch.topk(s, k)
    return top.indices.cpu().tolist(), top.values.cpu().tolist()
