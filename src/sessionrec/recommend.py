"""Recommend the next items for a live session, by title or id, with titles in the answer;
for a user (a rating model's unrated items, or a next-item model over the user's training
items); and for a file of many sessions or users (`sessionrec recommend --sessions`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import polars as pl
import torch

from sessionrec import _schema as S
from sessionrec._titles import TitleIndex
from sessionrec.errors import ConfigError, DataError, SessionrecError

if TYPE_CHECKING:
    from sessionrec.ann import ItemIndex
    from sessionrec.models.base import SessionModel


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


def as_id(raw: str, ids: Any) -> Any:
    """``raw`` converted to the dtype of the ``ids`` it is looked up in (int ids stay ints)."""
    try:
        return type(ids[0].item() if hasattr(ids[0], "item") else ids[0])(raw)
    except (ValueError, IndexError):
        return raw


def user_history(model_dir: str | Path, user: str) -> list[int | str]:
    """The item ids of ``user`` in the data the model in ``model_dir`` was fitted on (its
    ``data_meta.json``), in time order, each once.

    A user-as-session model (bpr, als: the mean of the items' factors) then scores the user's
    whole training history as one session.
    """
    from sessionrec.prepare import PreparedData
    from sessionrec.prepare.data import read_trained_on

    model_dir = Path(model_dir)
    meta = read_trained_on(model_dir)
    if meta is None or not isinstance(meta.get("path"), str):
        raise DataError(
            model_dir / "data_meta.json",
            expected="the path of the training data (from `sessionrec train`)",
            found="none",
        )
    data = PreparedData(meta["path"])
    parts = ["train", "valid"] if meta.get("fit_on") == "train+valid" else ["train"]
    frame = pl.concat([data.frame(p) for p in parts], how="diagonal_relaxed")
    if S.USER not in frame.columns:
        raise DataError(data.path, column=S.USER, expected="user ids", found="none")
    uid = as_id(user, frame[S.USER].unique().to_numpy())
    rows = frame.filter(pl.col(S.USER) == uid).sort(S.TIME)
    if rows.height == 0:
        raise DataError(data.path, column=S.USER, expected="a user seen in training", found=user)
    history: list[int | str] = rows[S.ITEM].unique(maintain_order=True).to_list()
    return history


#: Columns of a sessions file that hold the items (ids or titles), in the order looked for.
ITEM_COLUMNS = ("item", "item_id", "title")
#: Output formats of ``write_recommendations``, by suffix.
OUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".json")


def read_sessions(path: str | Path) -> tuple[str, list[tuple[Any, list[Any]]]]:
    """``(key column, [(key, items), ...])`` from a file of sessions or users, in its order.

    CSV, TSV or Parquet (by suffix): either ``session_id,item`` rows, one event a row in the
    session's order, ``item`` an id or a title (``item_id`` or ``title`` are read as ``item``
    too); or ``user_id`` rows, one user a row (then every ``items`` list is empty).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, expected="a CSV/TSV/Parquet file of sessions", found="no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pl.read_parquet(path, glob=False)
    elif suffix in (".csv", ".tsv", ".txt"):
        frame = pl.read_csv(
            path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=0, glob=False
        )  # every column as text: ids and titles alike, resolved against the model
    else:
        raise DataError(path, expected="a .csv, .tsv or .parquet file", found=f"{suffix!r}")
    item = next((c for c in ITEM_COLUMNS if c in frame.columns), None)
    if S.SESSION in frame.columns and item is not None:
        groups = (
            frame.with_row_index("_row")
            .group_by(S.SESSION, maintain_order=True)
            .agg(pl.col(item).sort_by("_row"))
        )
        return S.SESSION, [
            (s, [str(x) for x in items])
            for s, items in zip(groups[S.SESSION], groups[item], strict=True)
        ]
    if S.USER in frame.columns and item is None:
        return S.USER, [(u, []) for u in frame[S.USER].unique(maintain_order=True)]
    raise DataError(
        path,
        expected="columns session_id,item (one event a row) or user_id (one user a row)",
        found=", ".join(frame.columns) or "no columns",
    )


def write_recommendations(frame: pl.DataFrame, out: str | Path) -> None:
    """Write a table of recommendations by ``out``'s suffix (``OUT_SUFFIXES``), atomically;
    genres are joined by ``|`` in CSV/TSV."""
    from sessionrec._io import atomic_path

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise DataError(out, expected=f"an output file ending {', '.join(OUT_SUFFIXES)}",
                        found=f"{suffix!r}")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if suffix == ".parquet":
            frame.write_parquet(tmp)
        elif suffix == ".json":
            frame.write_json(tmp)
        else:
            flat = frame.with_columns(pl.col(S.GENRES).list.join("|")) if (
                S.GENRES in frame.columns
            ) else frame  # fmt: skip
            flat.write_csv(tmp, separator="\t" if suffix == ".tsv" else ",")


class FileRecommendations(NamedTuple):
    """What ``recommend_file`` wrote: the key column (``session_id`` or ``user_id``), how many
    sessions or users the file asked for, and the table."""

    key: str
    n_asked: int
    frame: pl.DataFrame


def recommend_file(
    model_dir: str | Path,
    sessions: str | Path,
    out: str | Path,
    k: int = 10,
    *,
    exclude_seen: bool = True,
    device: str = "cpu",
) -> FileRecommendations:
    """Top-``k`` for every session or user of the file ``sessions`` (``read_sessions``), one
    table written to ``out`` (``write_recommendations``): ``session_id`` (or ``user_id``),
    ``rank``, ``item_id``, ``title``, ``year``, ``genres``, ``score``.

    A rating model ranks each user's items by predicted rating; a next-item model takes a
    user's training items (``user_history``) as the session. Every session's items are
    resolved before anything is scored; one error names each bad session and the file.
    """
    from sessionrec import registry

    model_dir, sessions = Path(model_dir), Path(sessions)
    key, rows = read_sessions(sessions)
    if registry.folder_task(model_dir) == registry.RATING:
        if key != S.USER:
            raise DataError(sessions, expected="user_id rows for a rating model",
                            found="session_id,item rows")  # fmt: skip
        from sessionrec.rating import load_rating_model

        rating = load_rating_model(model_dir, device=device)
        frames = [
            rating.recommend(as_id(str(u), rating.user_ids), k, exclude_seen=exclude_seen)
            .rename({"predicted": "score"})
            .select(pl.lit(u).alias(key), pl.all())
            for u, _ in rows
        ]
        frame = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    else:
        from sessionrec.models import load_model

        if key == S.USER:
            rows = [(u, [str(i) for i in user_history(model_dir, str(u))]) for u, _ in rows]
        model = load_model(model_dir, device=device)
        try:
            frame = recommend_many(model, rows, k, exclude_seen=exclude_seen, key=key)
        except ItemLookupError as exc:
            raise ItemLookupError(f"{sessions}: {exc}") from None
        frame = frame.drop(S.ITEM_IDX, strict=False)
    write_recommendations(frame, out)
    return FileRecommendations(key, len(rows), frame)
