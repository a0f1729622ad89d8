"""Recommend the next items for a live session, by title or id, with titles in the answer."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl
import torch

from sessionrec import _schema as S
from sessionrec.errors import ConfigError, SessionrecError

if TYPE_CHECKING:
    from sessionrec.ann import ItemIndex
    from sessionrec.models.base import SessionModel


class ItemLookupError(SessionrecError):
    """An unknown or ambiguous item title/id; the message lists the closest matches."""


def resolve_items(items: pl.DataFrame, session: Sequence[int | str]) -> list[int]:
    """Map ids or titles to item indices.

    An entry matches, in order: an item id (as written), an exact title, a title without its
    year (``"Toy Story"``), a case-insensitive title, and the same with MovieLens' trailing
    article moved either way (``"The Godfather"`` and ``"Godfather"`` find
    ``"Godfather, The (1972)"``). Every entry is checked before anything is raised: one error
    lists each unknown entry with its closest titles, and each ambiguous one with its
    candidates (a title shared by several items, like ML-100K's two "Chasing Amy (1997)",
    can only be told apart by id).
    """
    ids = items[S.ITEM].cast(pl.Utf8).to_list()
    idx = items[S.ITEM_IDX].to_list()
    titles = items[S.TITLE].to_list() if S.TITLE in items.columns else [None] * len(ids)
    by_id = {str(i): j for i, j in zip(ids, idx, strict=True)}
    out: list[int] = []
    problems: list[str] = []
    for entry in session:
        key = str(entry).strip()
        if key in by_id and not (isinstance(entry, str) and _title_matches(titles, key)):
            out.append(by_id[key])
            continue
        hits = _title_matches(titles, key)
        if len(hits) == 1:
            out.append(idx[hits[0]])
            continue
        if len(hits) > 1:
            names = "; ".join(f"{titles[h]} (id {ids[h]})" for h in hits[:8])
            if len({titles[h] for h in hits}) == 1:
                problems.append(
                    f"{key!r} is the title of {len(hits)} items, which only the id can tell "
                    f"apart: {names}"
                )
            else:
                problems.append(f"{key!r} is ambiguous: {names}; give the full title or the id")
            continue
        if key in by_id:
            out.append(by_id[key])
            continue
        close = _closest(titles, key)
        hint = f" (closest: {'; '.join(close)})" if close else ""
        problems.append(f"unknown item {key!r}: not an id or title in the catalogue{hint}")
    if problems:
        raise ItemLookupError(" · ".join(problems))
    return out


#: MovieLens writes leading articles at the end: "Godfather, The (1972)", "Jour se lève, Le".
_ARTICLES = ("the", "a", "an", "les", "le", "la", "l'", "il", "el", "das", "der", "die")


def _core(title: str) -> str:
    """A title without its year, its case and its leading or trailing article."""
    t = title.strip()
    if t.endswith(")") and " (" in t:
        t = t.rsplit(" (", 1)[0]
    t = t.strip().lower()
    head, sep, tail = t.rpartition(", ")
    if sep and tail in _ARTICLES:
        return head.strip()
    first, sep, rest = t.partition(" ")
    if sep and first in _ARTICLES:
        return rest.strip()
    return t


def _title_matches(titles: list[str | None], key: str) -> list[int]:
    exact = [i for i, t in enumerate(titles) if t == key]
    if exact:
        return exact
    low = key.lower()
    no_year = [i for i, t in enumerate(titles) if t and t.rsplit(" (", 1)[0].strip().lower() == low]
    if no_year:
        return no_year
    case = [i for i, t in enumerate(titles) if t and t.lower() == low]
    if case:
        return case
    core = _core(key)
    return [i for i, t in enumerate(titles) if t and _core(t) == core] if core else []


def _closest(titles: list[str | None], key: str) -> list[str]:
    """Up to five titles close to ``key``: by spelling (articles and years aside), else the
    titles that contain it."""
    known = [t for t in titles if t]
    by_core: dict[str, list[str]] = {}
    for t in known:
        by_core.setdefault(_core(t), []).append(t)
    close = [
        t for c in difflib.get_close_matches(_core(key), list(by_core), n=5, cutoff=0.6)
        for t in by_core[c]
    ][:5]  # fmt: skip
    if not close:
        close = difflib.get_close_matches(key, known, n=5, cutoff=0.5)
    if not close:
        low = key.lower()
        close = [t for t in known if low in t.lower()][:5]
    return close


def top_k_frame(
    scores: torch.Tensor, k: int, items: pl.DataFrame | None, exclude: Sequence[int] = ()
) -> pl.DataFrame:
    """Top-``k`` of one (n_items,) score vector as a frame with rank, ids, titles and score."""
    # float64 scores (exact tie-breaks) keep their dtype; NaN is never recommended.
    s = scores.detach().to(torch.float64 if scores.dtype == torch.float64 else torch.float32)
    s = s.masked_fill(torch.isnan(s), -torch.inf)
    if exclude:
        s[torch.tensor(list(exclude), device=s.device)] = -torch.inf
    k = min(k, int(torch.isfinite(s).sum()))
    top = torch.topk(s, k)
    frame = pl.DataFrame(
        {
            "rank": pl.Series(range(1, k + 1), dtype=pl.Int64),
            S.ITEM_IDX: pl.Series(top.indices.cpu().numpy(), dtype=pl.Int64),
            "score": pl.Series(top.values.cpu().numpy(), dtype=pl.Float64),
        }
    )
    if items is None:
        return frame
    meta = [c for c in (S.ITEM, S.TITLE, S.YEAR, S.GENRES) if c in items.columns]
    frame = frame.join(
        items.select(S.ITEM_IDX, *meta), on=S.ITEM_IDX, how="left", maintain_order="left"
    )
    return frame.select("rank", *meta, "score", S.ITEM_IDX)


def recommend(
    model: SessionModel,
    session: Sequence[int | str],
    k: int = 10,
    *,
    exclude_seen: bool = True,
    index: ItemIndex | None = None,
) -> pl.DataFrame:
    """Top-``k`` next items after ``session`` (ids or titles) from a trained model.

    With ``index`` (``sessionrec.ann``), the model's query vector is searched in the index
    instead of scoring the whole catalogue (two-tower, bpr, als).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a whole number of at least 1 (how many items), not {k!r}")
    if model.items is None:
        raise SessionrecError("the model has no item table; train it through sessionrec.train")
    idx = resolve_items(model.items, session)
    if not idx:
        raise SessionrecError("the session is empty: give at least one item")
    if index is not None:
        from sessionrec.ann import session_queries

        index.check_model(model)
        query = session_queries(model, [idx])
        values, found = index.search(query, k, exclude=[idx] if exclude_seen else None)
        scores = torch.full((model.n_items,), -torch.inf)
        keep = found[0] >= 0
        scores[torch.from_numpy(found[0][keep])] = torch.from_numpy(values[0][keep])
        return top_k_frame(scores, k, model.items)
    scores = model.score_sessions([idx])[0]
    return top_k_frame(scores, k, model.items, exclude=idx if exclude_seen else ())


def recommend_many(
    model: SessionModel,
    sessions: Sequence[tuple[object, Sequence[int | str]]],
    k: int = 10,
    *,
    exclude_seen: bool = True,
    key: str = "session_id",
) -> pl.DataFrame:
    """Top-``k`` next items for many sessions at once: ``(key value, items)`` pairs in, one
    table out with ``key``, rank, item id, title (where known), score and item_idx.

    Sessions are scored in batches of equal length (``SessionModel.score_sessions``). Every
    session's items are resolved before anything is scored, and one error names each session
    with an unknown or ambiguous entry.
    """
    if model.items is None:
        raise SessionrecError("the model has no item table; train it through sessionrec.train")
    resolved: list[list[int]] = []
    problems: list[str] = []
    for name, items in sessions:
        try:
            idx = resolve_items(model.items, items)
        except ItemLookupError as exc:
            problems.append(f"{key} {name}: {exc}")
            continue
        if not idx:
            problems.append(f"{key} {name}: no items")
        resolved.append(idx)
    if problems:
        raise ItemLookupError(" · ".join(problems))
    frames = []
    step = 1024  # sessions scored per call: (step, n_items) scores at a time
    for start in range(0, len(resolved), step):
        chunk = resolved[start : start + step]
        scores = model.score_sessions(chunk)
        for row, idx in enumerate(chunk):
            frame = top_k_frame(scores[row], k, model.items, exclude=idx if exclude_seen else ())
            frames.append(frame.select(pl.lit(sessions[start + row][0]).alias(key), pl.all()))
    if not frames:
        return pl.DataFrame({key: [], "rank": []})
    return pl.concat(frames, how="vertical_relaxed")
