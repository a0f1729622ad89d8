"""Recommend the next items for a live session, by title or id, with titles in the answer;
for a user (a rating model's unrated items, or a next-item model over the user's training
items); and for a file of many sessions or users (`sessionrec recommend --sessions`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import polars as pl

from sessionrec import _schema as S
from sessionrec.errors import DataError, SessionrecError
from sessionrec.models._answer import ItemLookupError, resolve_items, title_index, top_k_frame

if TYPE_CHECKING:
    from sessionrec.ann import ItemIndex
    from sessionrec.models.base import SessionModel


def recommend(
    model: SessionModel,
    session: Sequence[int | str],
    k: int = 10,
    *,
    exclude_seen: bool = True,
    index: ItemIndex | None = None,
) -> pl.DataFrame:
    """Top-``k`` next items after ``session`` (ids or titles) from a trained model: the
    model's own ``recommend`` (``SessionModel.recommend``).

    With ``index`` (``sessionrec.ann``), the model's query vector is searched in the index
    instead of scoring the whole catalogue (two-tower, bpr, als).
    """
    return model.recommend(session, k, exclude_seen=exclude_seen, index=index)


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


__all__ = [
    "FileRecommendations",
    "ItemLookupError",
    "as_id",
    "read_sessions",
    "recommend",
    "recommend_file",
    "recommend_many",
    "resolve_items",
    "title_index",
    "top_k_frame",
    "user_history",
    "write_recommendations",
]
