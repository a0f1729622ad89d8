"""From scores to the answer a person reads: items named by id or title, and the top-k of a
score vector with ids, titles, years and genres. Shared by every model's ``recommend``, the
batch recommender and the HTTP service (``sessionrec.recommend`` re-exports these names)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import torch

from sessionrec import _schema as S
from sessionrec._titles import TitleIndex
from sessionrec.errors import ConfigError, SessionrecError


def check_k(k: object) -> None:
    """Refuse a ``k`` (how many items to recommend) that is not a whole number of at least 1."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a whole number of at least 1 (how many items), not {k!r}")


class ItemLookupError(SessionrecError):
    """An unknown or ambiguous item title/id; the message lists the closest matches."""


def resolve_items(items: pl.DataFrame, session: Sequence[int | str]) -> list[int]:
    """Map ids or titles to item indices.

    An entry is an item id (as written) or a title, matched by ``sessionrec._titles``' rules,
    the same behind every surface: the exact title, the title without its year, any case,
    MovieLens' trailing article moved either way (``"The Godfather"`` finds ``"Godfather, The
    (1972)"``), and finally any words of it (``"Jedi"`` finds ``"Return of the Jedi (1983)"``).
    Every entry is checked before anything is raised: one error lists each unknown entry with
    its closest titles, and each ambiguous one with its candidates (a title shared by several
    items, like ML-100K's two "Chasing Amy (1997)", can only be told apart by id).
    """
    ids = items[S.ITEM].cast(pl.Utf8).to_list()
    idx = items[S.ITEM_IDX].to_list()
    index = title_index(items)
    by_id = {str(i): j for i, j in zip(ids, idx, strict=True)}
    out: list[int] = []
    problems: list[str] = []
    for entry in session:
        key = str(entry).strip()
        # a number is an id; a string is a title first (a title may look like an id: "1941")
        hits = index.matches(key) if isinstance(entry, str) else []
        if key in by_id and not hits:
            out.append(by_id[key])
            continue
        if len(hits) == 1:
            out.append(idx[hits[0]])
            continue
        if len(hits) > 1:
            names = "; ".join(f"{index.titles[h]} (id {ids[h]})" for h in hits[:8])
            more = f" and {len(hits) - 8} more" if len(hits) > 8 else ""
            if len({index.titles[h] for h in hits}) == 1:
                problems.append(
                    f"{key!r} is the title of {len(hits)} items, which only the id can tell "
                    f"apart: {names}"
                )
            else:
                problems.append(
                    f"{key!r} is ambiguous: {names}{more}; give the full title or the id"
                )
            continue
        close = index.closest(key)
        hint = f" (closest: {'; '.join(close)})" if close else ""
        problems.append(f"unknown item {key!r}: not an id or title in the catalogue{hint}")
    if problems:
        raise ItemLookupError(" · ".join(problems))
    return out


_INDEXES: dict[int, tuple[pl.DataFrame, TitleIndex]] = {}


def title_index(items: pl.DataFrame) -> TitleIndex:
    """The ``TitleIndex`` of an item table (by row position), built once per table."""
    held = _INDEXES.get(id(items))
    if held is not None and held[0] is items:
        return held[1]
    titles = items[S.TITLE].to_list() if S.TITLE in items.columns else [None] * items.height
    counts = items["count"].to_numpy() if "count" in items.columns else None
    index = TitleIndex(titles, counts)
    if len(_INDEXES) >= 8:
        _INDEXES.pop(next(iter(_INDEXES)))
    _INDEXES[id(items)] = (items, index)
    return index


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
